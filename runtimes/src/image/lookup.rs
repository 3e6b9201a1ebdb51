//! Finding an image the way containerd's CRI plugin does (`LocalResolve`): a full
//! image id; else the normalized reference (tag or repo digest); else an id prefix
//! (`sha256:` optional), which must be unambiguous.

use super::index::{ImageRecord, Index};
use super::reference::{is_hex64, normalize};
use crate::error::{Error, Result};

/// The image `reference` names, if any.
pub(crate) fn find(index: &Index, reference: &str) -> Result<Option<ImageRecord>> {
    if let Some(hex) = reference.strip_prefix("sha256:") {
        if is_hex64(hex) {
            return index.get(reference);
        }
    }
    if let Ok(normalized) = normalize(reference) {
        if let Some(found) = index.by_name(&normalized.to_string())? {
            return Ok(Some(found));
        }
    }
    let prefix = reference.strip_prefix("sha256:").unwrap_or(reference);
    if prefix.is_empty()
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Ok(None);
    }
    let mut matches = index.all()?.into_iter().filter(|r| {
        r.id.strip_prefix("sha256:")
            .is_some_and(|h| h.starts_with(prefix))
    });
    match (matches.next(), matches.next()) {
        (Some(_), Some(_)) => Err(Error::InvalidSpec(format!(
            "image id prefix {reference:?} matches more than one image"
        ))),
        (found, None) => Ok(found),
        (None, Some(_)) => Ok(None),
    }
}
