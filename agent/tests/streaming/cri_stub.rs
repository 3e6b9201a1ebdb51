//! The smallest CRI server crictl accepts for `exec`, `attach` and `port-forward`:
//! `Version` and `ImageFsInfo` (crictl checks both services first) and the three
//! streaming verbs, answered by closures. The real verbs live in `agent/src/cri`;
//! these tests are about the streaming layer under them.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use berth_proto::cri::v1::*;
use futures::future::BoxFuture;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::Status;

/// Answers one kind of streaming request with a URL.
pub type Answer<Req> = Arc<dyn Fn(Req) -> BoxFuture<'static, Result<String, Status>> + Send + Sync>;

/// The three answers.
pub struct Stub {
    /// `Exec`.
    pub exec: Answer<ExecRequest>,
    /// `Attach`.
    pub attach: Answer<AttachRequest>,
    /// `PortForward`.
    pub port_forward: Answer<PortForwardRequest>,
}

/// Serves `stub` on a new unix socket at `path` until the task is aborted.
pub fn serve(stub: Stub, path: &Path) -> tokio::task::JoinHandle<()> {
    let listener = UnixListener::bind(path).expect("binding the CRI stub socket");
    let stub = Arc::new(stub);
    tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .add_service(Cri::<false>(stub.clone()))
            .add_service(Cri::<true>(stub))
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await;
        if let Err(e) = result {
            eprintln!("CRI stub stopped: {e}");
        }
    })
}

/// What a handler returns.
type Reply<T> = BoxFuture<'static, Result<tonic::Response<T>, Status>>;

async fn unary<Req, Resp, S>(req: http::Request<Body>, service: S) -> http::Response<Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    S: UnaryService<Req, Response = Resp> + Send + 'static,
{
    let codec = tonic_prost::ProstCodec::<Resp, Req>::default();
    Grpc::new(codec).unary(service, req).await
}

/// `Version` and `ImageFsInfo`: fixed answers.
struct Fixed;

impl UnaryService<VersionRequest> for Fixed {
    type Response = VersionResponse;
    type Future = Reply<VersionResponse>;

    fn call(&mut self, _: tonic::Request<VersionRequest>) -> Self::Future {
        Box::pin(async {
            Ok(tonic::Response::new(VersionResponse {
                version: "0.1.0".into(),
                runtime_name: "berth-streaming-test".into(),
                runtime_version: "0".into(),
                runtime_api_version: "v1".into(),
            }))
        })
    }
}

impl UnaryService<ImageFsInfoRequest> for Fixed {
    type Response = ImageFsInfoResponse;
    type Future = Reply<ImageFsInfoResponse>;

    fn call(&mut self, _: tonic::Request<ImageFsInfoRequest>) -> Self::Future {
        Box::pin(async { Ok(tonic::Response::new(ImageFsInfoResponse::default())) })
    }
}

/// A streaming verb: the stub's answer as the response's URL.
struct Url<Req>(Answer<Req>);

macro_rules! url_service {
    ($request:ty, $response:ident) => {
        impl UnaryService<$request> for Url<$request> {
            type Response = $response;
            type Future = Reply<$response>;

            fn call(&mut self, request: tonic::Request<$request>) -> Self::Future {
                let answer = (self.0)(request.into_inner());
                Box::pin(async move { Ok(tonic::Response::new($response { url: answer.await? })) })
            }
        }
    };
}

url_service!(ExecRequest, ExecResponse);
url_service!(AttachRequest, AttachResponse);
url_service!(PortForwardRequest, PortForwardResponse);

fn unimplemented() -> http::Response<Body> {
    Status::unimplemented("the CRI stub answers only the streaming verbs").into_http()
}

/// Both CRI services, routed by path; `IMAGE` only picks the service name tonic
/// routes to it.
#[derive(Clone)]
struct Cri<const IMAGE: bool>(Arc<Stub>);

impl NamedService for Cri<false> {
    const NAME: &'static str = "runtime.v1.RuntimeService";
}

impl NamedService for Cri<true> {
    const NAME: &'static str = "runtime.v1.ImageService";
}

impl<const IMAGE: bool> tower::Service<http::Request<Body>> for Cri<IMAGE> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let stub = self.0.clone();
        let path = req.uri().path().to_string();
        Box::pin(async move {
            Ok(match path.as_str() {
                "/runtime.v1.RuntimeService/Version" => {
                    unary::<VersionRequest, _, _>(req, Fixed).await
                }
                "/runtime.v1.ImageService/ImageFsInfo" => {
                    unary::<ImageFsInfoRequest, _, _>(req, Fixed).await
                }
                "/runtime.v1.RuntimeService/Exec" => unary(req, Url(stub.exec.clone())).await,
                "/runtime.v1.RuntimeService/Attach" => unary(req, Url(stub.attach.clone())).await,
                "/runtime.v1.RuntimeService/PortForward" => {
                    unary(req, Url(stub.port_forward.clone())).await
                }
                _ => unimplemented(),
            })
        })
    }
}
