//! The `RuntimeService` as served: the generated service, except that
//! `ListContainers` answers with its response encoded from each container's entry as
//! encoded once per version of its record ([`list_containers_encoded`]). kubelet's
//! PLEG lists every container every second; building and encoding each container's
//! message again (ids, image, labels, annotations: a dozen allocations each) was most
//! of a listing's cost. The codec below passes those bytes through and decodes the
//! request as the generated one does; everything around it (deadline, trace and
//! metrics layers, message size limits) is the same.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use berth_proto::cri::v1::runtime_service_server::RuntimeServiceServer;
use berth_proto::cri::v1::ListContainersRequest;
use bytes::{BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::cri::list_containers::list_containers_encoded;
use crate::cri::{Cri, MAX_MESSAGE_SIZE};
use crate::status::answer;

/// The path of `ListContainers`.
const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";

/// The `RuntimeService` berth serves (see the module comment).
#[derive(Clone)]
pub struct RuntimeServer {
    inner: RuntimeServiceServer<Cri>,
    cri: Arc<Cri>,
}

impl RuntimeServer {
    pub(in crate::cri) fn new(inner: RuntimeServiceServer<Cri>, cri: Arc<Cri>) -> Self {
        Self { inner, cri }
    }
}

impl NamedService for RuntimeServer {
    const NAME: &'static str = <RuntimeServiceServer<Cri> as NamedService>::NAME;
}

impl Service<http::Request<tonic::body::Body>> for RuntimeServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != LIST_CONTAINERS {
            let mut inner = self.inner.clone();
            return Box::pin(async move { inner.call(request).await });
        }
        let cri = self.cri.clone();
        Box::pin(async move {
            let mut grpc = Grpc::new(Encoded)
                .apply_max_message_size_config(Some(MAX_MESSAGE_SIZE), Some(MAX_MESSAGE_SIZE));
            Ok(grpc.unary(ListContainers(cri), request).await)
        })
    }
}

/// `ListContainers`, answering encoded bytes.
struct ListContainers(Arc<Cri>);

impl UnaryService<ListContainersRequest> for ListContainers {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<ListContainersRequest>) -> Self::Future {
        let cri = self.0.clone();
        Box::pin(async move { answer(list_containers_encoded(&cri, request.into_inner()).await) })
    }
}

/// Decodes the request as prost does; passes an encoded response through.
#[derive(Debug, Clone, Copy, Default)]
struct Encoded;

impl Codec for Encoded {
    type Encode = Bytes;
    type Decode = ListContainersRequest;
    type Encoder = Encoded;
    type Decoder = Encoded;

    fn encoder(&mut self) -> Encoded {
        Encoded
    }

    fn decoder(&mut self) -> Encoded {
        Encoded
    }
}

impl Encoder for Encoded {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Encoded {
    type Item = ListContainersRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ListContainersRequest::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
