//! A job's output on disk: each step's stdout and stderr are copied into files as they come
//! (never held in memory), capped at [`MAX_STREAM_BYTES`], and read back either inline (small
//! outputs) or as log parts of at most [`LOG_PART_BYTES`] of text.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

use berth_api::agent::{HostLogs, LogPart, StepOutput};
use berth_shared::release::{LOG_PART_BYTES, LOG_STEPS, LOG_STREAMS, MAX_STREAM_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

/// Outputs up to this size (all steps together) go inside the report itself.
pub const INLINE_BYTES: u64 = 1 << 20;
/// Raw bytes per part: lossy UTF-8 may turn each invalid byte into three, still within a part.
const RAW_PART_BYTES: u64 = (LOG_PART_BYTES / 3) as u64 - 4;

/// Where one log part lies in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartRef {
    pub step: &'static str,
    pub stream: &'static str,
    start: u64,
    len: u64,
}

/// The folder holding one job's outputs, one file per step and stream.
#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

impl Spool {
    /// A fresh folder for `job_id` under `root` (any earlier one of that job is emptied).
    pub fn create(root: &Path, job_id: &str) -> std::io::Result<Self> {
        let dir = root.join(job_id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    /// The folder of a job spooled before (a report still to deliver after a restart).
    pub fn open(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, step: &str, stream: &str) -> PathBuf {
        self.dir.join(format!("{step}-{stream}"))
    }

    /// Copies `reader` into the step's stream file until it ends, keeping the first
    /// [`MAX_STREAM_BYTES`] and saying how much more was dropped.
    pub async fn capture(&self, step: &str, stream: &str, mut reader: impl AsyncRead + Unpin) {
        let Ok(mut file) = tokio::fs::File::create(self.file(step, stream)).await else {
            // Nothing to write to: still drain, so the step is not blocked on a full pipe.
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            return;
        };
        let mut buffer = vec![0u8; 64 << 10];
        let (mut kept, mut dropped) = (0u64, 0u64);
        loop {
            let n = match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let room = MAX_STREAM_BYTES.saturating_sub(kept).min(n as u64) as usize;
            if room > 0 && file.write_all(&buffer[..room]).await.is_ok() {
                kept += room as u64;
            }
            dropped += (n - room) as u64;
        }
        if dropped > 0 {
            let note = format!("\n[berth-agent: {dropped} more bytes of {stream} were dropped after {kept}]\n");
            let _ = file.write_all(note.as_bytes()).await;
        }
        let _ = file.flush().await;
    }

    /// Bytes spooled, all steps and streams together.
    pub fn total_bytes(&self) -> u64 {
        std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0)
    }

    /// A step's whole output, if the step ran (its files exist).
    pub fn output(&self, step: &str) -> Option<StepOutput> {
        let read = |stream| std::fs::read(self.file(step, stream)).ok();
        let (stdout, stderr) = (read("stdout"), read("stderr"));
        if stdout.is_none() && stderr.is_none() {
            return None;
        }
        let text = |bytes: Option<Vec<u8>>| String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned();
        Some(StepOutput { stdout: text(stdout), stderr: text(stderr) })
    }

    /// The logs of the steps that ran: whole when `inline`, else with empty text (the text
    /// travels as [`Spool::parts`]).
    pub fn logs(&self, inline: bool) -> HostLogs {
        let output = |step| {
            let ran = self.output(step);
            if inline { ran } else { ran.map(|_| StepOutput::default()) }
        };
        HostLogs { pull: output("pull"), stop: output("stop"), start: output("start"), health: output("health") }
    }

    /// Where every part of the output lies, in order (steps, then stdout before stderr), cut
    /// so that no UTF-8 sequence is split across parts. Only offsets: the text is read per
    /// part as it is sent, so the agent never holds more than one part.
    pub fn part_refs(&self) -> std::io::Result<Vec<PartRef>> {
        let mut refs = Vec::new();
        for step in LOG_STEPS {
            for stream in LOG_STREAMS {
                let Ok(mut file) = std::fs::File::open(self.file(step, stream)) else { continue };
                let len = file.metadata()?.len();
                let mut start = 0u64;
                let mut tail = [0u8; 4];
                while start < len {
                    let mut end = (start + RAW_PART_BYTES).min(len);
                    if end < len {
                        // Back off continuation bytes (10xxxxxx), and the lead byte before them.
                        file.seek(SeekFrom::Start(end - 4))?;
                        file.read_exact(&mut tail)?;
                        let mut cut = 4;
                        while cut > 1 && tail[cut - 1] & 0xC0 == 0x80 {
                            cut -= 1;
                        }
                        if tail[cut - 1] >= 0xC0 {
                            cut -= 1;
                        }
                        end -= (4 - cut) as u64;
                    }
                    refs.push(PartRef { step, stream, start, len: end - start });
                    start = end;
                }
            }
        }
        Ok(refs)
    }

    /// The text of one part.
    pub fn read_part(&self, part: &PartRef) -> std::io::Result<LogPart> {
        let mut file = std::fs::File::open(self.file(part.step, part.stream))?;
        file.seek(SeekFrom::Start(part.start))?;
        let mut chunk = vec![0u8; part.len as usize];
        file.read_exact(&mut chunk)?;
        let text = String::from_utf8_lossy(&chunk).into_owned();
        Ok(LogPart { step: part.step.into(), stream: part.stream.into(), text })
    }

    /// Removes the folder once its report was delivered.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn parts_cut_at_character_boundaries_and_join_back_to_the_output() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::create(root.path(), "run-1").unwrap();
        // Three-byte characters across many part boundaries, and an invalid byte.
        let mut text = "ä€漢".repeat(200_000).into_bytes();
        text.push(0xFF);
        spool.capture("stop", "stdout", &text[..]).await;
        spool.capture("stop", "stderr", &b"warning\n"[..]).await;
        let parts: Vec<LogPart> = spool.part_refs().unwrap().iter().map(|r| spool.read_part(r).unwrap()).collect();
        assert!(parts.len() > 4);
        assert!(parts.iter().all(|p| p.text.len() <= LOG_PART_BYTES), "every part fits the server's limit");
        let joined: String = parts.iter().filter(|p| p.stream == "stdout").map(|p| p.text.as_str()).collect();
        assert_eq!(joined, String::from_utf8_lossy(&text));
        assert_eq!(parts.last().unwrap().text, "warning\n");
        assert_eq!(spool.logs(false).stop, Some(StepOutput::default()));
        assert_eq!(spool.logs(false).start, None, "a step that did not run has no logs");
        assert_eq!(spool.total_bytes(), text.len() as u64 + 8);
    }

    #[tokio::test]
    async fn a_stream_is_capped_while_it_is_copied() {
        let root = tempfile::tempdir().unwrap();
        let spool = Spool::create(root.path(), "run-2").unwrap();
        let endless = tokio::io::repeat(b'x').take(MAX_STREAM_BYTES + 1000);
        spool.capture("start", "stdout", endless).await;
        let size = std::fs::metadata(spool.dir().join("start-stdout")).unwrap().len();
        assert!(size < MAX_STREAM_BYTES + 200, "{size}");
        let kept = std::fs::read(spool.dir().join("start-stdout")).unwrap();
        assert!(String::from_utf8_lossy(&kept[kept.len() - 100..]).contains("1000 more bytes of stdout were dropped"));
    }
}
