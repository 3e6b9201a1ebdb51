//! CRI's `ImageService`, answered entirely by the runtime.

use berth_proto::cri::v1::image_service_server::ImageService;
use berth_proto::cri::v1::{
    ImageFsInfoRequest, ImageFsInfoResponse, ImageStatusRequest, ImageStatusResponse,
    ListImagesRequest, ListImagesResponse, PullImageRequest, PullImageResponse, RemoveImageRequest,
    RemoveImageResponse, StreamImagesRequest, StreamImagesResponse,
};
use tonic::{Request, Response, Status};

use super::streamed::streamed;
use crate::cri::shared::batches::BatchStream;
use crate::cri::{image_fs_info, image_status, list_images, pull_image, remove_image, Cri};
use crate::status::answer;

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        request: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        answer(list_images::list_images(self.runtime.as_ref(), request.into_inner()).await)
    }

    type StreamImagesStream = BatchStream<StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let filter = request.into_inner().filter;
        let listed =
            list_images::list_images(self.runtime.as_ref(), ListImagesRequest { filter }).await;
        streamed(
            listed,
            |all| all.images,
            |images| StreamImagesResponse { images },
        )
    }

    async fn image_status(
        &self,
        request: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        answer(image_status::image_status(self.runtime.as_ref(), request.into_inner()).await)
    }

    async fn pull_image(
        &self,
        request: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        answer(pull_image::pull_image(self.runtime.as_ref(), request.into_inner()).await)
    }

    async fn remove_image(
        &self,
        request: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        answer(remove_image::remove_image(self, request.into_inner()).await)
    }

    async fn image_fs_info(
        &self,
        request: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        answer(image_fs_info::image_fs_info(self.runtime.as_ref(), request.into_inner()).await)
    }
}
