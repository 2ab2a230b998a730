//! A take's gap list: appended to its JSON sidecar on disk, held in memory only as far as
//! needed (the first [`CUE_SLOTS`](super::CUE_SLOTS) for the WAV cue points, the gaps not yet
//! written, and the last one, which may still grow). The soak saw memory grow with a list
//! kept whole for an hour-long take, and rewriting it whole every second costs as much.

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use serde::Serialize;

use super::GapRecord;

/// What the sidecar says besides the gaps.
#[derive(Serialize)]
pub struct SidecarHead<'a> {
    pub recorder: &'a str,
    pub input: &'a str,
    pub sample_rate: u32,
    /// Media-clock position of the first frame (the files' BWF TimeReference).
    pub time_reference: u64,
    pub files: Vec<String>,
}

/// The sidecar file as written so far.
struct OnDisk {
    file: File,
    /// Where the last gap written starts (it is rewritten if it grew), and where the list ends.
    last_at: u64,
    end: u64,
    written: u64,
}

pub struct GapList {
    pub path: PathBuf,
    head: String,
    /// The first gaps, for cue points.
    first: Vec<GapRecord>,
    cue_slots: usize,
    /// Gaps after the last one on disk; or, when nothing new came, that last one again.
    unwritten: Vec<GapRecord>,
    /// Whether `unwritten[0]` is the last gap on disk (to be rewritten in place).
    rewrite_last: bool,
    /// Gaps in the list.
    pub count: u64,
    disk: Option<OnDisk>,
    dirty: bool,
}

impl GapList {
    pub fn new(path: PathBuf, head: &SidecarHead<'_>, cue_slots: usize) -> Self {
        let mut head = serde_json::to_string(head).unwrap_or_else(|_| "{".into());
        // `{…}` becomes `{…,"gaps":[`: entries and `]}` follow.
        head.pop();
        head.push_str(",\"gaps\":[");
        Self {
            path,
            head,
            first: Vec::new(),
            cue_slots,
            unwritten: Vec::new(),
            rewrite_last: false,
            count: 0,
            disk: None,
            dirty: true,
        }
    }

    pub fn push(&mut self, gap: GapRecord) {
        if self.first.len() < self.cue_slots {
            self.first.push(gap.clone());
        }
        if self.rewrite_last && self.unwritten.len() == 1 && !self.dirty {
            // The last one on disk is final now (and did not grow since): no need to keep it.
            self.unwritten.clear();
            self.rewrite_last = false;
        }
        self.unwritten.push(gap);
        self.count += 1;
        self.dirty = true;
    }

    /// Extends the last gap if `position` is where it ends; true if it did.
    pub fn extend_last(&mut self, position: u64, frames: u64) -> bool {
        let Some(last) = self.unwritten.last_mut() else {
            return false;
        };
        if last.position + last.frames != position {
            return false;
        }
        last.frames += frames;
        if self.count as usize <= self.first.len()
            && let Some(f) = self.first.last_mut()
        {
            f.frames = last.frames;
        }
        self.dirty = true;
        true
    }

    pub fn first(&self) -> &[GapRecord] {
        &self.first
    }

    /// Writes what changed (creating the sidecar the first time).
    pub fn write(&mut self) -> std::io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        let disk = match &mut self.disk {
            Some(d) => d,
            None => {
                let file = File::create(&self.path)?;
                file.write_all_at(self.head.as_bytes(), 0)?;
                let end = self.head.len() as u64;
                self.disk.insert(OnDisk {
                    file,
                    last_at: end,
                    end,
                    written: 0,
                })
            }
        };
        let (mut at, mut index) = if self.rewrite_last {
            (disk.last_at, disk.written - 1)
        } else {
            (disk.end, disk.written)
        };
        let mut text = String::new();
        let mut last_at = disk.last_at;
        for gap in &self.unwritten {
            last_at = at + text.len() as u64;
            text.push_str(if index == 0 { "\n" } else { ",\n" });
            text.push_str(&serde_json::to_string(gap).map_err(std::io::Error::other)?);
            index += 1;
        }
        let end = at + text.len() as u64;
        text.push_str("\n]}\n");
        // Entries then the closing brackets in one write, over the old closing brackets (or
        // the last entry, which grew): what a reader sees is whole JSON before and after.
        disk.file.write_all_at(text.as_bytes(), at)?;
        disk.file.set_len(at + text.len() as u64)?;
        at = end;
        disk.end = at;
        disk.last_at = last_at;
        disk.written = index;
        // Keep the last one: it may still grow.
        if let Some(last) = self.unwritten.pop() {
            self.unwritten.clear();
            self.unwritten.push(last);
            self.rewrite_last = true;
        }
        self.dirty = false;
        Ok(())
    }

    /// Deletes the sidecar (the take recorded nothing).
    pub fn remove(&mut self) {
        if self.disk.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(position: u64, frames: u64) -> GapRecord {
        GapRecord {
            position,
            offset: position - 1000,
            frames,
            cause: "lost",
        }
    }

    #[test]
    fn appends_rewrites_the_last_and_stays_json() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("x-gaps.json");
        let head = SidecarHead {
            recorder: "r",
            input: "i",
            sample_rate: 48_000,
            time_reference: 1000,
            files: vec!["x.wav".into()],
        };
        let mut list = GapList::new(path.clone(), &head, 2);
        let read = || -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json")
        };
        list.write().expect("write");
        assert_eq!(read()["gaps"].as_array().map(Vec::len), Some(0));
        assert_eq!(read()["time_reference"], 1000);
        list.push(gap(1100, 48));
        list.write().expect("write");
        assert!(list.extend_last(1148, 48));
        list.write().expect("write");
        // Grows after it was written, then a new gap comes before the next write.
        assert!(list.extend_last(1196, 4));
        list.push(gap(1500, 1));
        list.write().expect("write");
        assert_eq!(read()["gaps"][0]["frames"], 100);
        assert_eq!(read()["gaps"][1]["position"], 1500);
        for k in 0..100 {
            list.push(gap(2000 + k * 100, 10));
            if k % 7 == 0 {
                list.write().expect("write");
            }
        }
        assert!(list.extend_last(2000 + 99 * 100 + 10, 5));
        list.write().expect("write");
        let gaps = read()["gaps"].as_array().cloned().expect("gaps");
        assert_eq!(gaps.len(), 102);
        assert_eq!(gaps[0]["frames"], 100);
        assert_eq!(gaps[2]["position"], 2000);
        assert_eq!(gaps[101]["frames"], 15);
        assert_eq!(list.first().len(), 2);
        assert_eq!(list.first()[0].frames, 100);
        // Memory holds the cue slots and the last gap only.
        assert_eq!(list.unwritten.len(), 1);
        assert_eq!(list.count, 102);
    }

    /// Random pushes, growths and writes against a plain list: the sidecar always says
    /// exactly what was noted (the soak once found whole gaps cut short).
    #[test]
    fn the_sidecar_matches_every_sequence_of_pushes_growths_and_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..200 {
            let path = dir.path().join(format!("{round}-gaps.json"));
            let head = SidecarHead {
                recorder: "r",
                input: "i",
                sample_rate: 48_000,
                time_reference: 1000,
                files: vec![],
            };
            let mut list = GapList::new(path.clone(), &head, 3);
            let mut model: Vec<(u64, u64)> = Vec::new();
            let mut at = 1000u64;
            for _ in 0..next(60) {
                match next(4) {
                    0 | 1 => {
                        at += 1 + next(500);
                        let frames = 1 + next(9);
                        list.push(gap(at, frames));
                        model.push((at, frames));
                        at += frames;
                    }
                    2 => {
                        let frames = 1 + next(9);
                        let grew = list.extend_last(at, frames);
                        assert_eq!(grew, !model.is_empty());
                        if let Some(last) = model.last_mut() {
                            last.1 += frames;
                            at += frames;
                        }
                    }
                    _ => {
                        list.write().expect("write");
                        let text = std::fs::read_to_string(&path).expect("read");
                        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
                        let on_disk: Vec<(u64, u64)> = json["gaps"]
                            .as_array()
                            .expect("gaps")
                            .iter()
                            .map(|g| {
                                (
                                    g["position"].as_u64().expect("position"),
                                    g["frames"].as_u64().expect("frames"),
                                )
                            })
                            .collect();
                        assert_eq!(on_disk, model, "round {round}");
                    }
                }
            }
        }
    }
}
