//! Listings answered from entries encoded once per version of a record
//! (`ListContainers`, `ListPodSandbox`: kubelet's PLEG calls both every second).
//! Building and encoding each object's message again (ids, metadata, labels,
//! annotations: a dozen allocations each) was most of a listing's cost; the entries
//! are encoded without their state and the state is appended when a listing writes
//! them (protobuf takes a message's fields in any order, the last one of a field
//! wins).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};

/// Each listed object's entry, encoded without its state, by CRI id, with the version
/// of its record it was encoded from (the store's index puts a new `Arc` for every
/// change of a record).
pub(in crate::cri) struct Entries<R>(Mutex<HashMap<String, (Arc<R>, Bytes)>>);

impl<R> Default for Entries<R> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

/// How a listing encodes its objects.
pub(in crate::cri) struct Encoding<R> {
    /// The number of the state field in an entry (a varint below 128).
    pub state_field: u32,
    /// The CRI id of a record.
    pub id: fn(&R) -> &str,
    /// A record's entry with the state whose number is 0 (not encoded).
    pub encode: fn(&R) -> Vec<u8>,
}

impl<R> Entries<R> {
    /// The encoded response listing `listed` (records with their states' numbers,
    /// each below 128) as field 1, each entry reused when it was encoded from the same
    /// version of its record. A listing of everything (`whole`) keeps the entries it
    /// wrote and drops the others (removed objects); a filtered one adds to them.
    pub(in crate::cri) fn answer(
        &self,
        listed: Vec<(Arc<R>, u8)>,
        whole: bool,
        encoding: &Encoding<R>,
    ) -> Bytes {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut kept = whole.then(HashMap::new);
        let mut out = BytesMut::with_capacity(listed.len() * 512);
        let state_key = (encoding.state_field << 3) as u8;
        for (record, state) in listed {
            let id = (encoding.id)(&record);
            let entry = match entries.get(id) {
                Some((version, entry)) if Arc::ptr_eq(version, &record) => entry.clone(),
                _ => Bytes::from((encoding.encode)(&record)),
            };
            // Field 1, length-delimited: the entry, then the state field, a varint of
            // one byte.
            out.put_u8(0x0a);
            prost::encoding::encode_varint(entry.len() as u64 + 2, &mut out);
            out.put_slice(&entry);
            out.put_u8(state_key);
            out.put_u8(state);
            let keep = match kept.as_mut() {
                Some(kept) => kept,
                None => &mut *entries,
            };
            keep.insert(id.to_string(), (record, entry));
        }
        if let Some(kept) = kept {
            *entries = kept;
        }
        out.freeze()
    }

    /// Drops the entries of removed objects, so what a burst of pods left here goes
    /// with them and not only at the next listing of everything (a node without
    /// kubelet's PLEG may never make one). The table shrinks once it is a quarter full:
    /// a thousand removed containers leave no table sized for them behind.
    pub(in crate::cri) fn forget<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut entries = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            entries.remove(id);
        }
        if entries.len() * 4 < entries.capacity() {
            entries.shrink_to_fit();
        }
    }

    /// How many entries are kept.
    #[cfg(test)]
    pub(in crate::cri) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
