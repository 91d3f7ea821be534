//! Writes packed into one buffer while a Bulk job holds them.
//!
//! A Bulk job keeps its writes for as long as Salesforce takes to process it (seconds to
//! minutes), and a task has up to `salesforce.max.in.flight.requests` jobs of
//! `salesforce.bulk.max.records.per.job` writes (400,000 by default). As [`Item`]s they cost
//! about three times their bytes (struct padding, one allocation per key and per field set);
//! packed, each is its bytes plus 26 bytes. The job needs only its CSV body meanwhile: the writes
//! are unpacked again to read its results.

use super::{Item, Origin};
use crate::config::Operation;
use crate::plan::PlannedWrite;
use std::sync::Arc;

const HAS_KEY: u8 = 1;
const HAS_UNSENT_KEY: u8 = 1 << 1;
const HAS_ID: u8 = 1 << 2;
const ID_FROM_CACHE: u8 = 1 << 3;
const RE_RESOLVED: u8 = 1 << 4;

pub(super) struct Parked {
    bytes: Vec<u8>,
    /// SObject and topic names, shared by many writes: stored once, referred to by index.
    names: Vec<Arc<str>>,
    count: usize,
}

impl Parked {
    pub(super) fn pack(items: Vec<Item>) -> Parked {
        let data: usize = items
            .iter()
            .map(|i| {
                i.write.fields.len()
                    + i.write.key.as_ref().map_or(0, String::len)
                    + i.id.as_ref().map_or(0, String::len)
                    + i.origin.unsent_key.as_ref().map_or(0, |k| k.len())
            })
            .sum();
        let mut parked = Parked { bytes: Vec::with_capacity(data + items.len() * 30), names: Vec::new(), count: items.len() };
        for item in items {
            parked.push(item);
        }
        parked
    }

    fn push(&mut self, item: Item) {
        let Item { write: PlannedWrite { sobject, op, key, fields }, origin, id, id_from_cache, re_resolved } = item;
        let flags = [
            (key.is_some(), HAS_KEY),
            (origin.unsent_key.is_some(), HAS_UNSENT_KEY),
            (id.is_some(), HAS_ID),
            (id_from_cache, ID_FROM_CACHE),
            (re_resolved, RE_RESOLVED),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |all, (_, flag)| all | flag);
        self.bytes.push(flags);
        self.bytes.push(op as u8);
        let (sobject, topic) = (self.name(sobject), self.name(origin.topic));
        self.bytes.extend_from_slice(&sobject.to_le_bytes());
        self.bytes.extend_from_slice(&topic.to_le_bytes());
        self.bytes.extend_from_slice(&origin.partition.to_le_bytes());
        self.bytes.extend_from_slice(&origin.offset.to_le_bytes());
        for text in [key.as_deref(), origin.unsent_key.as_deref(), id.as_deref()].into_iter().flatten() {
            self.bytes_of(text.as_bytes());
        }
        self.bytes_of(&fields);
    }

    fn name(&mut self, name: Arc<str>) -> u32 {
        let at = match self.names.iter().position(|n| Arc::ptr_eq(n, &name) || **n == *name) {
            Some(at) => at,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        };
        at as u32
    }

    fn bytes_of(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(data);
    }

    /// The writes as they were packed, in order.
    pub(super) fn unpack(self) -> Vec<Item> {
        let mut reader = Reader { bytes: &self.bytes, at: 0 };
        let mut items = Vec::with_capacity(self.count);
        for _ in 0..self.count {
            let flags = reader.take(1)[0];
            let op = OPERATIONS[reader.take(1)[0] as usize];
            let sobject = Arc::clone(&self.names[reader.u32() as usize]);
            let topic = Arc::clone(&self.names[reader.u32() as usize]);
            let partition = i32::from_le_bytes(reader.take(4).try_into().expect("4 bytes"));
            let offset = i64::from_le_bytes(reader.take(8).try_into().expect("8 bytes"));
            let mut text = |flag: u8| (flags & flag != 0).then(|| reader.text());
            let key = text(HAS_KEY);
            let unsent_key = text(HAS_UNSENT_KEY).map(String::into_boxed_str);
            let id = text(HAS_ID);
            let fields: Arc<[u8]> = Arc::from(reader.sized());
            items.push(Item {
                write: PlannedWrite { sobject, op, key, fields },
                origin: Origin { topic, partition, offset, unsent_key },
                id,
                id_from_cache: flags & ID_FROM_CACHE != 0,
                re_resolved: flags & RE_RESOLVED != 0,
            });
        }
        items
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> &'a [u8] {
        let taken = &self.bytes[self.at..self.at + n];
        self.at += n;
        taken
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
    }

    fn sized(&mut self) -> &'a [u8] {
        let n = self.u32() as usize;
        self.take(n)
    }

    fn text(&mut self) -> String {
        String::from_utf8(self.sized().to_vec()).expect("packed from a String")
    }
}

/// Hands the pages that packing freed back to the system. The writes were many small
/// allocations; glibc's allocator keeps freed ones in its arenas, where they count as the
/// worker's RSS until reused (the JDK trims for the same reason: `-XX:TrimNativeHeapInterval`).
pub(super) fn return_freed_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> std::os::raw::c_int;
        }
        // SAFETY: malloc_trim takes the allocator's own locks and only releases free pages.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// Operations by their code in a packed write: `op as u8`, the order of their declaration.
const OPERATIONS: [Operation; 4] = [Operation::Insert, Operation::Update, Operation::Delete, Operation::Upsert];

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: usize, op: Operation, topic: &Arc<str>, sobject: &Arc<str>) -> Item {
        let key = (n % 3 != 0).then(|| format!("K-{n}-é"));
        Item {
            write: PlannedWrite {
                sobject: if n % 5 == 0 { Arc::from("Account") } else { Arc::clone(sobject) },
                op,
                key,
                fields: Arc::from(format!("\"N\":{n},\"T\":\"x\\\"y\"").repeat(n % 4).as_bytes()),
            },
            origin: Origin {
                topic: Arc::clone(topic),
                partition: (n % 7) as i32 - 1,
                offset: i64::MAX - n as i64,
                unsent_key: (n % 2 == 0).then(|| format!("raw {n}").into_boxed_str()),
            },
            id: (n % 4 == 1).then(|| format!("003{n:015}")),
            id_from_cache: n % 6 == 1,
            re_resolved: n % 8 == 3,
        }
    }

    #[test]
    fn writes_come_back_as_they_were_packed() {
        let (topic, sobject): (Arc<str>, Arc<str>) = (Arc::from("contacts"), Arc::from("Contact"));
        let ops = [Operation::Insert, Operation::Update, Operation::Delete, Operation::Upsert];
        let items: Vec<Item> = (0..200).map(|n| item(n, ops[n % 4], &topic, &sobject)).collect();
        let shown: Vec<String> = items.iter().map(|i| format!("{i:?}")).collect();
        let parked = Parked::pack(items);
        assert_eq!(parked.names.len(), 3, "each name is stored once");
        let back = parked.unpack();
        assert_eq!(back.iter().map(|i| format!("{i:?}")).collect::<Vec<_>>(), shown);
        assert!(Arc::ptr_eq(&back[1].write.sobject, &back[2].write.sobject), "unpacked writes share their names again");
    }

    #[test]
    fn nothing_packs_to_nothing() {
        assert!(Parked::pack(vec![]).unpack().is_empty());
    }
}
