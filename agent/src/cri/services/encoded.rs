//! The `RuntimeService` as served: the generated service, except that
//! `ListContainers` and `ListPodSandbox` answer with their responses encoded from each
//! object's entry as encoded once per version of its record
//! ([`list_containers_encoded`], [`list_pod_sandbox_encoded`], `shared::entries`).
//! kubelet's PLEG lists every pod and container every second; building and encoding
//! each one's message again (ids, metadata, labels, annotations: a dozen allocations
//! each) was most of a listing's cost. The codec below passes those bytes through and
//! decodes the request as the generated one does; everything around it (deadline,
//! trace and metrics layers, message size limits) is the same.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;
use std::task::{Context, Poll};

use berth_proto::cri::v1::runtime_service_server::RuntimeServiceServer;
use bytes::{BufMut, Bytes};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use crate::cri::list_containers::list_containers_encoded;
use crate::cri::list_pod_sandbox::list_pod_sandbox_encoded;
use crate::cri::{Cri, MAX_MESSAGE_SIZE};
use crate::status::answer;

/// The path of `ListContainers`.
const LIST_CONTAINERS: &str = "/runtime.v1.RuntimeService/ListContainers";
/// The path of `ListPodSandbox`.
const LIST_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/ListPodSandbox";

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
        let cri = self.cri.clone();
        match request.uri().path() {
            LIST_CONTAINERS => Box::pin(serve(cri, request, |cri, request| {
                Box::pin(async move { answer(list_containers_encoded(&cri, request).await) })
            })),
            LIST_POD_SANDBOX => Box::pin(serve(cri, request, |cri, request| {
                Box::pin(async move { answer(list_pod_sandbox_encoded(&cri, request).await) })
            })),
            _ => {
                let mut inner = self.inner.clone();
                Box::pin(async move { inner.call(request).await })
            }
        }
    }
}

/// What answers a listing's request `Req` with encoded bytes.
type Answer<Req> = fn(Arc<Cri>, Req) -> BoxFuture<Response<Bytes>, Status>;

/// Serves `request` as a unary call answered by `answer`.
async fn serve<Req: Message + Default + Send + 'static>(
    cri: Arc<Cri>,
    request: http::Request<tonic::body::Body>,
    answer: Answer<Req>,
) -> Result<http::Response<tonic::body::Body>, Infallible> {
    let mut grpc = Grpc::new(Encoded::<Req>(PhantomData))
        .apply_max_message_size_config(Some(MAX_MESSAGE_SIZE), Some(MAX_MESSAGE_SIZE));
    Ok(grpc.unary(Listing { cri, answer }, request).await)
}

/// A listing, answering encoded bytes.
struct Listing<Req> {
    cri: Arc<Cri>,
    answer: Answer<Req>,
}

impl<Req: Send + 'static> UnaryService<Req> for Listing<Req> {
    type Response = Bytes;
    type Future = BoxFuture<Response<Bytes>, Status>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        (self.answer)(self.cri.clone(), request.into_inner())
    }
}

/// Decodes the request `Req` as prost does; passes an encoded response through.
struct Encoded<Req>(PhantomData<fn() -> Req>);

impl<Req: Message + Default + Send + 'static> Codec for Encoded<Req> {
    type Encode = Bytes;
    type Decode = Req;
    type Encoder = Encoded<Req>;
    type Decoder = Encoded<Req>;

    fn encoder(&mut self) -> Encoded<Req> {
        Encoded(PhantomData)
    }

    fn decoder(&mut self) -> Encoded<Req> {
        Encoded(PhantomData)
    }
}

impl<Req> Encoder for Encoded<Req> {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<Req: Message + Default> Decoder for Encoded<Req> {
    type Item = Req;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Req>, Status> {
        Req::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}
