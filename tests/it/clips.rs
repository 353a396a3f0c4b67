//! Small real MP4/QuickTime clips for the probe's tests, written box by box as ISO BMFF
//! (ISO 14496-12) and QuickTime lay them out: `ftyp`, `moov` (`mvhd`, a video `trak` with
//! `tkhd`, `mdia`/`mdhd`/`hdlr`, `minf`/`vmhd`/`dinf`/`stbl` with an `avc1` sample entry,
//! `stts`, `stsc`, `stsz`, `stco`; optionally an AAC audio `trak`), and an `mdat` before or
//! after the `moov`. The frames are not decodable pictures: the probe reads headers only,
//! as a provider's validation does. A few KB each. Test code only; the product and the
//! simulator each read these with their own code. `tests/assets/*.mp4|mov` are this
//! generator's output (`assets_are_this_generators_output` checks they still are).

/// One clip's shape.
#[derive(Debug, Clone, Copy)]
pub struct Clip {
    /// QuickTime (`qt  ` brand, `mhlr` handlers) instead of MP4.
    pub mov: bool,
    pub width: u16,
    pub height: u16,
    /// Frames, and media units per frame at `timescale`.
    pub frames: u32,
    pub frame_delta: u32,
    pub timescale: u32,
    pub audio: bool,
    /// The `moov` after the media data (as many exporters write it).
    pub moov_at_end: bool,
    /// Bytes of media data.
    pub mdat_bytes: usize,
}

impl Clip {
    /// 5 s, 1280x720, 30 fps MP4 without audio: inside every provider's limits.
    pub const OK: Clip = Clip {
        mov: false,
        width: 1280,
        height: 720,
        frames: 150,
        frame_delta: 512,
        timescale: 15360,
        audio: false,
        moov_at_end: false,
        mdat_bytes: 1024,
    };

    /// Seconds of this clip.
    pub fn seconds(&self) -> f64 {
        f64::from(self.frames) * f64::from(self.frame_delta) / f64::from(self.timescale)
    }

    pub fn bytes(&self) -> Vec<u8> {
        let ftyp = if self.mov {
            boxed(b"ftyp", &cat(&[b"qt  ", &0x0200u32.to_be_bytes(), b"qt  "]))
        } else {
            boxed(
                b"ftyp",
                &cat(&[b"isom", &0x0200u32.to_be_bytes(), b"isomiso2avc1mp41"]),
            )
        };
        let mdat = boxed(b"mdat", &vec![0u8; self.mdat_bytes]);
        let moov = self.moov();
        if self.moov_at_end {
            cat(&[&ftyp, &mdat, &moov])
        } else {
            cat(&[&ftyp, &moov, &mdat])
        }
    }

    fn moov(&self) -> Vec<u8> {
        let ms = (self.seconds() * 1000.0).round() as u32;
        let mut mvhd = full(0, 0);
        mvhd.extend(0u32.to_be_bytes()); // creation
        mvhd.extend(0u32.to_be_bytes()); // modification
        mvhd.extend(1000u32.to_be_bytes());
        mvhd.extend(ms.to_be_bytes());
        mvhd.extend(0x0001_0000u32.to_be_bytes()); // rate 1.0
        mvhd.extend(0x0100u16.to_be_bytes()); // volume 1.0
        mvhd.extend([0u8; 10]);
        mvhd.extend(matrix());
        mvhd.extend([0u8; 24]);
        mvhd.extend(3u32.to_be_bytes()); // next track id
        let mut parts = vec![boxed(b"mvhd", &mvhd), self.video_trak(ms)];
        if self.audio {
            parts.push(self.audio_trak(ms));
        }
        let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
        boxed(b"moov", &cat(&refs))
    }

    fn handler(&self, kind: &[u8; 4], name: &str) -> Vec<u8> {
        let mut h = full(0, 0);
        h.extend(if self.mov { *b"mhlr" } else { [0u8; 4] });
        h.extend(kind);
        h.extend([0u8; 12]);
        h.extend(name.as_bytes());
        h.push(0);
        boxed(b"hdlr", &h)
    }

    fn video_trak(&self, ms: u32) -> Vec<u8> {
        let tkhd = tkhd(
            1,
            ms,
            0,
            u32::from(self.width) << 16,
            u32::from(self.height) << 16,
        );
        let mdhd = mdhd(self.timescale, self.frames * self.frame_delta);
        let mut vmhd = full(0, 1);
        vmhd.extend([0u8; 8]);
        let mut entry = vec![0u8; 6];
        entry.extend(1u16.to_be_bytes()); // data reference index
        entry.extend([0u8; 16]);
        entry.extend(self.width.to_be_bytes());
        entry.extend(self.height.to_be_bytes());
        entry.extend(0x0048_0000u32.to_be_bytes());
        entry.extend(0x0048_0000u32.to_be_bytes());
        entry.extend(0u32.to_be_bytes());
        entry.extend(1u16.to_be_bytes()); // frame count
        entry.extend([0u8; 32]); // compressor name
        entry.extend(0x0018u16.to_be_bytes());
        entry.extend((-1i16).to_be_bytes());
        let sps = [0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50];
        let pps = [0x68, 0xeb, 0xe3, 0xcb];
        let mut avcc = vec![1, 0x64, 0x00, 0x1f, 0xff, 0xe1];
        avcc.extend((sps.len() as u16).to_be_bytes());
        avcc.extend(sps);
        avcc.push(1);
        avcc.extend((pps.len() as u16).to_be_bytes());
        avcc.extend(pps);
        entry.extend(boxed(b"avcC", &avcc));
        let stbl = stbl(&boxed(b"avc1", &entry), self.frames, self.frame_delta);
        let minf = boxed(b"minf", &cat(&[&boxed(b"vmhd", &vmhd), &dinf(), &stbl]));
        let mdia = boxed(
            b"mdia",
            &cat(&[&mdhd, &self.handler(b"vide", "VideoHandler"), &minf]),
        );
        boxed(b"trak", &cat(&[&tkhd, &mdia]))
    }

    fn audio_trak(&self, ms: u32) -> Vec<u8> {
        let rate = 48_000u32;
        let samples = (u64::from(rate) * u64::from(ms) / 1000 / 1024) as u32;
        let tkhd = tkhd(2, ms, 0x0100, 0, 0);
        let mdhd = mdhd(rate, samples * 1024);
        let mut smhd = full(0, 0);
        smhd.extend([0u8; 4]);
        let mut entry = vec![0u8; 6];
        entry.extend(1u16.to_be_bytes());
        entry.extend([0u8; 8]); // version, revision, vendor
        entry.extend(2u16.to_be_bytes()); // channels
        entry.extend(16u16.to_be_bytes()); // sample size
        entry.extend([0u8; 4]);
        entry.extend((rate << 16).to_be_bytes());
        // ES_Descriptor: AAC LC, 48 kHz, stereo.
        let dsi = [0x05, 0x02, 0x11, 0x90];
        let sl = [0x06, 0x01, 0x02];
        let mut dcd = vec![0x40, 0x15, 0, 0, 0];
        dcd.extend(128_000u32.to_be_bytes());
        dcd.extend(128_000u32.to_be_bytes());
        dcd.extend(dsi);
        let mut es = vec![0x00, 0x01, 0x00, 0x04, dcd.len() as u8];
        es.extend(dcd);
        es.extend(sl);
        let mut esds = full(0, 0);
        esds.extend([0x03, es.len() as u8]);
        esds.extend(es);
        entry.extend(boxed(b"esds", &esds));
        let stbl = stbl(&boxed(b"mp4a", &entry), samples, 1024);
        let minf = boxed(b"minf", &cat(&[&boxed(b"smhd", &smhd), &dinf(), &stbl]));
        let mdia = boxed(
            b"mdia",
            &cat(&[&mdhd, &self.handler(b"soun", "SoundHandler"), &minf]),
        );
        boxed(b"trak", &cat(&[&tkhd, &mdia]))
    }
}

fn tkhd(id: u32, ms: u32, volume: u16, width: u32, height: u32) -> Vec<u8> {
    let mut t = full(0, 3);
    t.extend([0u8; 8]);
    t.extend(id.to_be_bytes());
    t.extend([0u8; 4]);
    t.extend(ms.to_be_bytes());
    t.extend([0u8; 8]);
    t.extend([0u8; 4]); // layer, alternate group
    t.extend(volume.to_be_bytes());
    t.extend([0u8; 2]);
    t.extend(matrix());
    t.extend(width.to_be_bytes());
    t.extend(height.to_be_bytes());
    boxed(b"tkhd", &t)
}

fn mdhd(timescale: u32, duration: u32) -> Vec<u8> {
    let mut m = full(0, 0);
    m.extend([0u8; 8]);
    m.extend(timescale.to_be_bytes());
    m.extend(duration.to_be_bytes());
    m.extend(0x55c4u16.to_be_bytes()); // und
    m.extend([0u8; 2]);
    boxed(b"mdhd", &m)
}

fn dinf() -> Vec<u8> {
    let mut dref = full(0, 0);
    dref.extend(1u32.to_be_bytes());
    dref.extend(boxed(b"url ", &full(0, 1)));
    boxed(b"dinf", &boxed(b"dref", &dref))
}

fn stbl(entry: &[u8], samples: u32, delta: u32) -> Vec<u8> {
    let mut stsd = full(0, 0);
    stsd.extend(1u32.to_be_bytes());
    stsd.extend(entry);
    let mut stts = full(0, 0);
    stts.extend(1u32.to_be_bytes());
    stts.extend(samples.to_be_bytes());
    stts.extend(delta.to_be_bytes());
    let mut stsc = full(0, 0);
    stsc.extend(1u32.to_be_bytes());
    stsc.extend(1u32.to_be_bytes());
    stsc.extend(samples.to_be_bytes());
    stsc.extend(1u32.to_be_bytes());
    let mut stsz = full(0, 0);
    stsz.extend(1u32.to_be_bytes()); // every sample 1 byte
    stsz.extend(samples.to_be_bytes());
    let mut stco = full(0, 0);
    stco.extend(1u32.to_be_bytes());
    stco.extend(0u32.to_be_bytes());
    boxed(
        b"stbl",
        &cat(&[
            &boxed(b"stsd", &stsd),
            &boxed(b"stts", &stts),
            &boxed(b"stsc", &stsc),
            &boxed(b"stsz", &stsz),
            &boxed(b"stco", &stco),
        ]),
    )
}

fn matrix() -> Vec<u8> {
    let mut m = Vec::new();
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        m.extend(v.to_be_bytes());
    }
    m
}

fn full(version: u8, flags: u32) -> Vec<u8> {
    let f = flags.to_be_bytes();
    vec![version, f[1], f[2], f[3]]
}

/// A box: 32-bit size, type, payload.
pub fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut b = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    b.extend(kind);
    b.extend(payload);
    b
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// The clips shipped under `tests/assets/`, by file name.
pub fn assets() -> Vec<(&'static str, Clip)> {
    let ok = Clip::OK;
    vec![
        ("ok.mp4", ok),
        // 2 s: under every provider's 3 s minimum.
        ("short.mp4", Clip { frames: 60, ..ok }),
        // 640x360: under fal's and Kling's 720 px.
        (
            "small.mp4",
            Clip {
                width: 640,
                height: 360,
                ..ok
            },
        ),
        // 120 fps for 5 s: over the 60 fps maximum.
        (
            "fast.mp4",
            Clip {
                frames: 600,
                frame_delta: 128,
                ..ok
            },
        ),
        // QuickTime, with the moov after the media data.
        (
            "ok.mov",
            Clip {
                mov: true,
                moov_at_end: true,
                ..ok
            },
        ),
        // With an AAC audio track, the moov at the end and 40 KB of media data.
        (
            "audio.mp4",
            Clip {
                audio: true,
                moov_at_end: true,
                mdat_bytes: 40_000,
                ..ok
            },
        ),
        // 1920x1080 for 6 s: inside every limit (1080p is Oxen's maximum).
        (
            "fullhd.mp4",
            Clip {
                width: 1920,
                height: 1080,
                frames: 180,
                ..ok
            },
        ),
        // 2560x1440: the width over fal's and Kling's 2160 px, and over Oxen's 1080p.
        (
            "qhd.mp4",
            Clip {
                width: 2560,
                height: 1440,
                ..ok
            },
        ),
    ]
}

/// The path of a shipped asset.
pub fn asset_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/assets")
        .join(name)
}

#[test]
fn assets_are_this_generators_output() {
    for (name, clip) in assets() {
        let path = asset_path(name);
        if std::env::var_os("RESTYLE_WRITE_ASSETS").is_some() {
            std::fs::write(&path, clip.bytes()).expect("write asset");
        }
        let shipped = std::fs::read(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            shipped,
            clip.bytes(),
            "{name} differs from the generator's output"
        );
        assert!(
            shipped.len() < 64 * 1024,
            "{name} is {} bytes",
            shipped.len()
        );
    }
}

/// A clip of `len` bytes: a real MP4 head that the enqueue-time probe reads, then an
/// `mdat` of pseudo-random bytes.
pub fn padded(len: usize) -> Vec<u8> {
    let head = Clip {
        mdat_bytes: 0,
        ..Clip::OK
    }
    .bytes();
    // The empty mdat's header is rewritten to hold the rest of the file.
    let mut bytes = head[..head.len() - 8].to_vec();
    let rest = u32::try_from(len - bytes.len()).expect("clip under 4 GiB");
    bytes.extend_from_slice(&rest.to_be_bytes());
    bytes.extend_from_slice(b"mdat");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    bytes.truncate(len);
    bytes
}
