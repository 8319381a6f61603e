//! The inbox on disk: an append-only log of checksummed records in `inbox.log`.
//!
//! ```text
//! file    = magic "PHINBOX1" , record*
//! record  = len: u32 LE , crc32(body): u32 LE , body (len bytes)
//! body    = 1 , id[16] , from_len: u8 , from (peer ID bytes) , at_ms: u64 LE , data   stored
//!         | 2 , id[16]                                                             removed
//!         | 3 , id[16]                                   delivered earlier (for dedup)
//! ```
//!
//! A message is acknowledged to its sender only after its `stored` record is written and
//! the file synced; `removed` is appended (and synced) when a reader acknowledged it.
//! Replay rebuilds the queue: a torn or corrupt tail (the crash happened mid-append) is
//! cut off at the last good record and logged; a file that is not an inbox log at all is
//! moved aside and logged; neither stops the daemon. [`Log::compact`] rewrites the file
//! (the live messages and the recent ids) atomically once dead records outweigh live ones.
//! Everything here is blocking file IO, run on a blocking thread or at start-up.

use super::super::datadir::{self, DataDirError};
use pheromone::PeerId;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// File name of the inbox log in the data dir.
pub const INBOX_LOG: &str = "inbox.log";
const MAGIC: &[u8; 8] = b"PHINBOX1";
/// Longest record body: a maximal message plus its header, with room to spare. Checked
/// before allocating, so a corrupt length cannot make replay allocate gigabytes.
const MAX_BODY: usize = crate::control_proto::MAX_MESSAGE + 1024;

const STORED: u8 = 1;
const REMOVED: u8 = 2;
const SEEN: u8 = 3;

/// A message id: 16 random bytes chosen by the sender.
pub type MessageId = [u8; 16];

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A message stored.
    Stored {
        /// Its id.
        id: MessageId,
        /// Its sender.
        from: PeerId,
        /// When it was stored (Unix milliseconds).
        at_ms: u64,
        /// The message.
        data: Vec<u8>,
    },
    /// A message a reader acknowledged.
    Removed(MessageId),
    /// An id delivered before the last compaction, kept to refuse duplicates.
    Seen(MessageId),
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(&[0; 8]);
        match self {
            Record::Stored {
                id,
                from,
                at_ms,
                data,
            } => {
                let from = from.to_bytes();
                out.push(STORED);
                out.extend_from_slice(id);
                // Peer IDs are 38 bytes for Ed25519; longer ones are not ours to store.
                out.push(u8::try_from(from.len()).unwrap_or(u8::MAX));
                out.extend_from_slice(&from[..from.len().min(255)]);
                out.extend_from_slice(&at_ms.to_le_bytes());
                out.extend_from_slice(data);
            }
            Record::Removed(id) => {
                out.push(REMOVED);
                out.extend_from_slice(id);
            }
            Record::Seen(id) => {
                out.push(SEEN);
                out.extend_from_slice(id);
            }
        }
        let body_len = out.len() - start - 8;
        let crc = crc32(&out[start + 8..]);
        out[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(body: &[u8]) -> Option<Record> {
        let (&kind, rest) = body.split_first()?;
        let id: MessageId = rest.get(..16)?.try_into().ok()?;
        let rest = &rest[16..];
        match kind {
            STORED => {
                let (&from_len, rest) = rest.split_first()?;
                let from = PeerId::from_bytes(rest.get(..usize::from(from_len))?).ok()?;
                let rest = &rest[usize::from(from_len)..];
                let at_ms = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?);
                Some(Record::Stored {
                    id,
                    from,
                    at_ms,
                    data: rest[8..].to_vec(),
                })
            }
            REMOVED if rest.is_empty() => Some(Record::Removed(id)),
            SEEN if rest.is_empty() => Some(Record::Seen(id)),
            _ => None,
        }
    }
}

/// What replay found besides the records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// The good records, in order.
    pub records: Vec<Record>,
    /// Bytes cut off a damaged tail.
    pub dropped_tail: u64,
    /// Where a file that was not an inbox log was moved.
    pub moved_aside: Option<PathBuf>,
}

/// The open log, positioned at its end.
#[derive(Debug)]
pub struct Log {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    len: u64,
    buf: Vec<u8>,
}

impl Log {
    /// Opens (or creates) the log in `dir` and reads every good record.
    pub fn open(dir: &Path) -> Result<(Self, Replay), DataDirError> {
        let path = dir.join(INBOX_LOG);
        let mut replay = Replay::default();
        let mut file = datadir::open_private(&path)?;
        let io = |action: &'static str| {
            let path = path.clone();
            move |source| DataDirError::Io {
                path,
                action,
                source,
            }
        };
        let mut head = [0u8; 8];
        let got = read_full(&mut file, &mut head).map_err(io("read"))?;
        if got > 0 && (got < MAGIC.len() || &head != MAGIC) {
            drop(file);
            let aside = dir.join(format!("{INBOX_LOG}.corrupt-{}", std::process::id()));
            std::fs::rename(&path, &aside).map_err(io("move aside"))?;
            replay.moved_aside = Some(aside);
            file = datadir::open_private(&path)?;
        }
        let mut len = file.metadata().map_err(io("inspect"))?.len();
        if len == 0 {
            file.write_all(MAGIC).map_err(io("write"))?;
            file.sync_all().map_err(io("sync"))?;
            datadir::sync_dir(dir)?;
            len = MAGIC.len() as u64;
        } else {
            let good = read_records(&mut file, len, &mut replay.records).map_err(io("read"))?;
            if good < len {
                replay.dropped_tail = len - good;
                file.set_len(good).map_err(io("truncate"))?;
                file.sync_all().map_err(io("sync"))?;
                len = good;
            }
        }
        file.seek(SeekFrom::Start(len)).map_err(io("seek"))?;
        Ok((
            Self {
                path,
                file,
                len,
                buf: Vec::new(),
            },
            replay,
        ))
    }

    /// Bytes in the file.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Appends records and syncs the file's data: they are on disk when this returns.
    pub fn append(&mut self, records: &[Record]) -> Result<(), DataDirError> {
        self.buf.clear();
        for record in records {
            record.encode(&mut self.buf);
        }
        let result = self
            .file
            .write_all(&self.buf)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = result {
            // A partial write would leave a torn record mid-file: cut back to the last good
            // end so later appends stay readable.
            let _ = self.file.set_len(self.len);
            let _ = self.file.seek(SeekFrom::Start(self.len));
            return Err(DataDirError::Io {
                path: self.path.clone(),
                action: "append to",
                source,
            });
        }
        self.len += self.buf.len() as u64;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        Ok(())
    }

    /// Rewrites the log as `records` atomically and continues appending to the new file.
    pub fn compact(&mut self, records: &[Record]) -> Result<(), DataDirError> {
        let mut bytes = MAGIC.to_vec();
        for record in records {
            record.encode(&mut bytes);
        }
        datadir::write_atomic(&self.path, &bytes)?;
        let mut file = datadir::open_private(&self.path)?;
        file.seek(SeekFrom::End(0))
            .map_err(|source| DataDirError::Io {
                path: self.path.clone(),
                action: "seek",
                source,
            })?;
        self.file = file;
        self.len = bytes.len() as u64;
        Ok(())
    }
}

/// Reads as much of `buf` as the file holds; how many bytes.
fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..])? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

/// Reads records after the magic; the offset where the good records end.
fn read_records(file: &mut File, len: u64, out: &mut Vec<Record>) -> std::io::Result<u64> {
    let mut reader = std::io::BufReader::new(file);
    reader.seek(SeekFrom::Start(MAGIC.len() as u64))?;
    let mut at = MAGIC.len() as u64;
    let mut head = [0u8; 8];
    let mut body = Vec::new();
    loop {
        if len - at < 8 {
            return Ok(at);
        }
        reader.read_exact(&mut head)?;
        let body_len = u32::from_le_bytes(head[..4].try_into().unwrap_or_default()) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().unwrap_or_default());
        if body_len > MAX_BODY || (len - at - 8) < body_len as u64 {
            return Ok(at);
        }
        body.resize(body_len, 0);
        reader.read_exact(&mut body)?;
        if crc32(&body) != crc {
            return Ok(at);
        }
        let Some(record) = Record::decode(&body) else {
            return Ok(at);
        };
        out.push(record);
        at += 8 + body_len as u64;
    }
}

/// CRC-32 (IEEE 802.3, as zlib and gzip compute it).
pub fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        pheromone::Keypair::from_seed([3; 32]).peer_id()
    }

    fn stored(n: u8) -> Record {
        Record::Stored {
            id: [n; 16],
            from: peer(),
            at_ms: 1000 + u64::from(n),
            data: vec![n; usize::from(n) * 10],
        }
    }

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn records_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, replay) = Log::open(dir.path()).expect("open");
        assert_eq!(replay, Replay::default());
        let records = [
            stored(1),
            stored(2),
            Record::Removed([1; 16]),
            Record::Seen([9; 16]),
        ];
        log.append(&records[..2]).expect("append");
        log.append(&records[2..]).expect("append");
        drop(log);
        let (_, replay) = Log::open(dir.path()).expect("reopen");
        assert_eq!(replay.records, records);
        assert_eq!(replay.dropped_tail, 0);
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_at_the_last_good_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = Log::open(dir.path()).expect("open");
        log.append(&[stored(1), stored(2)]).expect("append");
        let good_len = {
            let (_, r) = Log::open(dir.path()).expect("reopen");
            assert_eq!(r.records.len(), 2);
            std::fs::metadata(dir.path().join(INBOX_LOG))
                .expect("meta")
                .len()
        };
        drop(log);
        // A crash mid-append: half a record.
        let mut torn = Vec::new();
        stored(3).encode(&mut torn);
        let path = dir.path().join(INBOX_LOG);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.extend_from_slice(&torn[..torn.len() / 2]);
        std::fs::write(&path, &bytes).expect("write");
        let (mut log, replay) = Log::open(dir.path()).expect("reopen");
        assert_eq!(replay.records, [stored(1), stored(2)]);
        assert_eq!(replay.dropped_tail, (torn.len() / 2) as u64);
        assert_eq!(log.len(), good_len);
        // Appending after the cut works, and a flipped byte in the last record drops it.
        log.append(&[stored(4)]).expect("append");
        drop(log);
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let (_, replay) = Log::open(dir.path()).expect("reopen");
        assert_eq!(replay.records, [stored(1), stored(2)]);
    }

    #[test]
    fn a_foreign_file_is_moved_aside_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(INBOX_LOG);
        std::fs::write(&path, b"\x00\xffgarbage that is no inbox log at all").expect("write");
        let (mut log, replay) = Log::open(dir.path()).expect("open");
        assert!(replay.records.is_empty());
        let aside = replay.moved_aside.expect("moved aside");
        assert!(aside.exists());
        log.append(&[stored(1)]).expect("append");
        drop(log);
        assert_eq!(
            Log::open(dir.path()).expect("reopen").1.records,
            [stored(1)]
        );
    }

    #[test]
    fn a_huge_length_is_not_allocated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(INBOX_LOG);
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(&[0; 64]);
        std::fs::write(&path, &bytes).expect("write");
        let (_, replay) = Log::open(dir.path()).expect("open");
        assert!(replay.records.is_empty());
        assert_eq!(replay.dropped_tail, 68, "everything after the magic");
    }

    #[test]
    fn compaction_keeps_only_what_it_is_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = Log::open(dir.path()).expect("open");
        log.append(&[stored(1), stored(2), Record::Removed([1; 16])])
            .expect("append");
        log.compact(&[stored(2), Record::Seen([1; 16])])
            .expect("compact");
        log.append(&[stored(3)]).expect("append after compaction");
        drop(log);
        let (_, replay) = Log::open(dir.path()).expect("reopen");
        assert_eq!(
            replay.records,
            [stored(2), Record::Seen([1; 16]), stored(3)]
        );
    }
}
