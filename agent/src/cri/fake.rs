//! A small in-memory `Runtime` for the CRI handlers' unit tests: it holds a list of
//! images, records what it was asked, and can be told to fail the next call.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use runtimes::types::{FsUsage, ImageInfo, PullRequest};
use runtimes::{Error, Result, Runtime};

#[derive(Default)]
pub(crate) struct FakeRuntime {
    /// The images the fake holds; `pull_image` finds its answer here too.
    pub images: Mutex<Vec<ImageInfo>>,
    /// Every pull request received.
    pub pulls: Mutex<Vec<PullRequest>>,
    /// Every reference `remove_image` received.
    pub removed: Mutex<Vec<String>>,
    next_failure: Mutex<Option<Error>>,
}

impl FakeRuntime {
    pub fn with_images(images: Vec<ImageInfo>) -> Self {
        Self {
            images: Mutex::new(images),
            ..Self::default()
        }
    }

    /// A fake whose next call fails with `err`.
    pub fn failing(err: Error) -> Self {
        Self {
            next_failure: Mutex::new(Some(err)),
            ..Self::default()
        }
    }

    fn check(&self) -> Result<()> {
        match self.next_failure.lock().unwrap().take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    fn find(&self, reference: &str) -> Option<ImageInfo> {
        let images = self.images.lock().unwrap();
        images
            .iter()
            .find(|i| {
                i.id == reference
                    || i.repo_tags.iter().any(|t| t == reference)
                    || i.repo_digests.iter().any(|d| d == reference)
            })
            .cloned()
    }
}

#[async_trait]
impl Runtime for FakeRuntime {
    fn name(&self) -> &str {
        "fake"
    }

    fn runs_os(&self, os: &str) -> bool {
        os == "linux"
    }

    async fn pull_image(&self, request: &PullRequest) -> Result<ImageInfo> {
        self.pulls.lock().unwrap().push(request.clone());
        self.check()?;
        self.find(&request.reference)
            .ok_or_else(|| Error::not_found("image", &request.reference))
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>> {
        self.check()?;
        Ok(self.find(reference))
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.check()?;
        Ok(self.images.lock().unwrap().clone())
    }

    async fn remove_image(&self, reference: &str) -> Result<()> {
        self.removed.lock().unwrap().push(reference.to_string());
        self.check()?;
        let found = self.find(reference);
        self.images
            .lock()
            .unwrap()
            .retain(|i| Some(&i.id) != found.as_ref().map(|f| &f.id));
        Ok(())
    }

    async fn image_fs_info(&self) -> Result<Vec<FsUsage>> {
        self.check()?;
        Ok(vec![FsUsage {
            timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            mountpoint: PathBuf::from("/var/lib/berth/images"),
            used_bytes: 4096,
            inodes_used: 12,
        }])
    }
}
