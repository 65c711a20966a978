use super::write::{Windowed, SEEK_WINDOW};
use super::*;
use std::io::Cursor;
use std::io::{Read, Seek, SeekFrom, Write};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

enum E<'a> {
    File(&'a str, &'a [u8]),
    Deflated(&'a str, Vec<u8>),
    Dir(&'a str),
    Link(&'a str, &'a str),
}

fn zip_of(entries: &[E]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
    let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for e in entries {
        match e {
            E::File(name, body) => {
                w.start_file(*name, stored).unwrap();
                w.write_all(body).unwrap();
            }
            E::Deflated(name, body) => {
                w.start_file(*name, deflated).unwrap();
                w.write_all(body).unwrap();
            }
            E::Dir(name) => w.add_directory(*name, stored).unwrap(),
            E::Link(name, target) => w.add_symlink(*name, *target, stored).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

fn spooled(bytes: &[u8]) -> Spooled {
    Spooled::from_reader(bytes, MAX_BUNDLE_BYTES).unwrap()
}

fn check(bytes: &[u8]) -> Result<Plan, BundleError> {
    inspect(&spooled(bytes), &Limits::default(), &Normalise::default())
}

fn names(plan: &Plan) -> Vec<&str> {
    plan.entries.iter().map(|e| e.name.as_str()).collect()
}

const PROCFILE: E = E::File("Procfile", b"web: python app.py\n");

/// CRC-32 (IEEE), for zips written byte by byte.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An entry for [`raw_zip`]: whatever names and fields a test needs, which `ZipWriter` would refuse
/// (it will not write two entries of the same name).
struct Raw {
    name: Vec<u8>,
    /// 0 stored, 8 deflated.
    method: u16,
    /// As stored in the zip (compressed when deflated).
    data: Vec<u8>,
    crc: u32,
    size: u32,
    /// Unix mode, as `zip` (3 = Unix) writes it in the external attributes.
    mode: u32,
    /// Extra fields of the central directory record only.
    central_extra: Vec<u8>,
}

fn raw_file(name: &str, body: &[u8]) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        method: 0,
        data: body.to_vec(),
        crc: crc32(body),
        size: body.len() as u32,
        mode: 0o100644,
        central_extra: vec![],
    }
}

fn raw_link(name: &str, target: &str) -> Raw {
    Raw {
        mode: 0o120777,
        ..raw_file(name, target.as_bytes())
    }
}

/// Deflated by the zip crate, then taken out of its zip raw.
fn raw_deflated(name: &str, body: Vec<u8>) -> Raw {
    let bytes = zip_of(&[E::Deflated("x", body)]);
    let mut archive = ZipArchive::new(Cursor::new(bytes)).unwrap();
    let mut entry = archive.by_index_raw(0).unwrap();
    let (crc, size) = (entry.crc32(), entry.size() as u32);
    let mut data = vec![];
    entry.read_to_end(&mut data).unwrap();
    Raw {
        method: 8,
        data,
        crc,
        size,
        ..raw_file(name, b"")
    }
}

/// A zip written byte by byte (APPNOTE 4.3): local headers and data, the central directory, then the
/// end record, ZIP64's end record and locator first when `zip64`.
fn raw_zip(entries: &[Raw], zip64: bool) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, fields: &[&[u8]]) {
        for f in fields {
            out.extend_from_slice(f);
        }
    }
    let (mut out, mut central) = (vec![], vec![]);
    // 1980-01-01 00:00.
    let (time, date) = (0u16.to_le_bytes(), 0x21u16.to_le_bytes());
    for e in entries {
        let offset = out.len() as u32;
        let common: [&[u8]; 8] = [
            &0u16.to_le_bytes(),
            &e.method.to_le_bytes(),
            &time,
            &date,
            &e.crc.to_le_bytes(),
            &(e.data.len() as u32).to_le_bytes(),
            &e.size.to_le_bytes(),
            &(e.name.len() as u16).to_le_bytes(),
        ];
        put(
            &mut out,
            &[&0x0403_4b50u32.to_le_bytes(), &20u16.to_le_bytes()],
        );
        put(&mut out, &common);
        put(&mut out, &[&0u16.to_le_bytes(), &e.name, &e.data]);
        put(
            &mut central,
            &[
                &0x0201_4b50u32.to_le_bytes(),
                &(0x0300u16 | 20).to_le_bytes(),
                &20u16.to_le_bytes(),
            ],
        );
        put(&mut central, &common);
        put(
            &mut central,
            &[
                &(e.central_extra.len() as u16).to_le_bytes(),
                &0u16.to_le_bytes(),
                &0u16.to_le_bytes(),
                &0u16.to_le_bytes(),
                &(e.mode << 16).to_le_bytes(),
                &offset.to_le_bytes(),
                &e.name,
                &e.central_extra,
            ],
        );
    }
    let (start, size, count) = (out.len() as u64, central.len() as u64, entries.len() as u64);
    out.extend_from_slice(&central);
    if zip64 {
        let record = out.len() as u64;
        put(
            &mut out,
            &[
                &0x0606_4b50u32.to_le_bytes(),
                &44u64.to_le_bytes(),
                &(0x0300u16 | 45).to_le_bytes(),
                &45u16.to_le_bytes(),
                &0u32.to_le_bytes(),
                &0u32.to_le_bytes(),
                &count.to_le_bytes(),
                &count.to_le_bytes(),
                &size.to_le_bytes(),
                &start.to_le_bytes(),
                &0x0706_4b50u32.to_le_bytes(),
                &0u32.to_le_bytes(),
                &record.to_le_bytes(),
                &1u32.to_le_bytes(),
            ],
        );
    }
    let (count, size, start) = if zip64 {
        (u16::MAX, u32::MAX, u32::MAX)
    } else {
        (count as u16, size as u32, start as u32)
    };
    put(
        &mut out,
        &[
            &0x0605_4b50u32.to_le_bytes(),
            &0u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &count.to_le_bytes(),
            &count.to_le_bytes(),
            &size.to_le_bytes(),
            &start.to_le_bytes(),
            &0u16.to_le_bytes(),
        ],
    );
    out
}

fn raw_procfile() -> Raw {
    raw_file("Procfile", b"web: python app.py\n")
}

/// The error's text, after checking it is a [`BundleError::Duplicate`].
fn duplicate(bytes: &[u8]) -> String {
    let err = check(bytes).map(|p| format!("{p:?}")).unwrap_err();
    assert!(matches!(err, BundleError::Duplicate { .. }), "{err:?}");
    err.to_string()
}

#[test]
fn raw_zips_read_back_as_written() {
    for zip64 in [false, true] {
        let bytes = raw_zip(
            &[
                raw_procfile(),
                raw_deflated("app.py", b"print(1)\n".repeat(100)),
                raw_link("current", "app.py"),
            ],
            zip64,
        );
        let plan = check(&bytes).unwrap_or_else(|e| panic!("zip64 {zip64}: {e}"));
        assert_eq!(names(&plan), ["Procfile", "app.py", "current"]);
        assert_eq!(plan.entries[2].kind, Kind::Symlink);
        assert_eq!(plan.files, 3);
    }
}

#[test]
fn a_repeated_name_is_refused_however_the_zip_library_lists_it() {
    let zeros = vec![0u8; 8 * 1024 * 1024];
    // The zip library files both records under one name and sees only the second: a small, harmless
    // entry that hides the first from every check unless the central directory is read record by record.
    let cases: Vec<(&str, Vec<Raw>, &str)> = vec![
        (
            "a ratio bomb, then a small entry of the same name",
            vec![
                raw_procfile(),
                raw_deflated("data.bin", zeros),
                raw_file("data.bin", b"small"),
            ],
            "entries `data.bin` (number 2 in the zip) and `data.bin` (number 3) have the same name",
        ),
        (
            "a symlink out of the bundle, then a file of the same name",
            vec![
                raw_procfile(),
                raw_link("passwd", "/etc/passwd"),
                raw_file("passwd", b"root:x:0:0::/root:/bin/sh\n"),
            ],
            "entries `passwd` (number 2 in the zip) and `passwd` (number 3) have the same name",
        ),
        (
            "two copies of the entry point",
            vec![raw_procfile(), raw_file("Procfile", b"web: ./other\n")],
            "entries `Procfile` (number 1 in the zip) and `Procfile` (number 2) have the same name",
        ),
        (
            "a name given by the Info-ZIP Unicode Path field, as unzip and the zip library read it",
            vec![
                raw_procfile(),
                raw_file("app.py", b"1"),
                Raw {
                    central_extra: [
                        &0x7075u16.to_le_bytes()[..],
                        &11u16.to_le_bytes(),
                        &[1],
                        &crc32(b"xyz.py").to_le_bytes(),
                        b"app.py",
                    ]
                    .concat(),
                    ..raw_file("xyz.py", b"2")
                },
            ],
            "entries `app.py` (number 2 in the zip) and `app.py` (number 3) have the same name",
        ),
    ];
    for (what, entries, expected) in cases {
        let err = duplicate(&raw_zip(&entries, false));
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err:?}"
        );
        assert!(
            err.contains("depends on the unzip program"),
            "{what}: {err}"
        );
    }
}

#[test]
fn names_that_unpack_to_one_path_are_refused_naming_both() {
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "backslash",
            zip_of(&[PROCFILE, E::File("conf\\app.ini", b"1"), E::File("conf/app.ini", b"2")]),
            "entries `conf\\app.ini` (number 2 in the zip) and `conf/app.ini` (number 3) name the same path once `\\` is read as a folder separator",
        ),
        (
            "ASCII case",
            zip_of(&[PROCFILE, E::File("Config.py", b"1"), E::File("config.py", b"2")]),
            "entries `Config.py` (number 2 in the zip) and `config.py` (number 3) differ only in letter case",
        ),
        (
            "Unicode case, in a folder",
            zip_of(&[PROCFILE, E::File("Ärger/a", b"1"), E::File("ärger/a", b"2")]),
            "entries `Ärger/a` (number 2 in the zip) and `ärger/a` (number 3) differ only in letter case",
        ),
        (
            "file and folder",
            zip_of(&[PROCFILE, E::File("static", b"1"), E::Dir("static/")]),
            "entries `static` (number 2 in the zip) and `static/` (number 3) are a file and a folder at the same path",
        ),
        (
            "an entry inside a file",
            zip_of(&[PROCFILE, E::File("lib", b"1"), E::File("lib/x.py", b"2")]),
            "entries `lib` (number 2 in the zip) and `lib/x.py` (number 3) clash: the second lies inside the first, which is not a folder",
        ),
        (
            "an entry inside a file of another case",
            zip_of(&[PROCFILE, E::File("Lib", b"1"), E::File("lib/x.py", b"2")]),
            "entries `Lib` (number 2 in the zip) and `lib/x.py` (number 3) clash",
        ),
    ];
    for (what, bytes, expected) in cases {
        let err = duplicate(&bytes);
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err:?}"
        );
    }
    // Turning `fix_backslashes` off does not make `a\b` and `a/b` two paths: some unzips still read `\`
    // as a separator.
    let bytes = zip_of(&[PROCFILE, E::File("a\\b", b"1"), E::File("a/b", b"2")]);
    let off = Normalise {
        fix_backslashes: false,
        ..Normalise::default()
    };
    let err = inspect(&spooled(&bytes), &Limits::default(), &off).unwrap_err();
    assert!(err.to_string().contains("name the same path"), "{err}");
}

#[test]
fn every_record_of_the_central_directory_is_listed() {
    // Names without the UTF-8 flag are CP437, decoded as the zip library decodes them (every
    // entry's name is compared with the library's, so a difference would refuse the bundle).
    let mut high = raw_file("x", b"");
    high.name = (0x80..=0xffu8).filter(|b| *b != b'/').collect();
    let bytes = raw_zip(&[raw_procfile(), high], false);
    let plan = check(&bytes).unwrap();
    let library = ZipArchive::new(Cursor::new(&bytes)).unwrap();
    assert_eq!(plan.entries[1].name, library.name_for_index(1).unwrap());
    assert!(plan.entries[1].name.starts_with("ÇüéâäàåçêëèïîìÄÅ"));

    // A zip behind a self-extracting stub is read where it starts.
    let stub = [b"#!/bin/sh\nexit 0\n".repeat(10), zip_of(&[PROCFILE])].concat();
    assert_eq!(names(&check(&stub).unwrap()), ["Procfile"]);

    // One record more than the end record counts: the zip library never sees it, another reader might.
    let mut hidden = raw_zip(&[raw_procfile(), raw_link("passwd", "/etc/passwd")], false);
    let end = hidden.len() - 22;
    hidden[end + 8..end + 12].copy_from_slice(&[1, 0, 1, 0]);
    let err = check(&hidden).unwrap_err();
    assert!(matches!(err, BundleError::Directory { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the entries its end record counts (1) end at byte"),
        "{err}"
    );
}

#[test]
fn refuses_unsafe_bundles_naming_the_entry() {
    let zeros = vec![0u8; 8 * 1024 * 1024];
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dot-dot",
            zip_of(&[PROCFILE, E::File("../evil.sh", b"x")]),
            "entry `../evil.sh` climbs out of the bundle root with `..`",
        ),
        (
            "nested dot-dot",
            zip_of(&[PROCFILE, E::File("app/../../evil", b"x")]),
            "entry `app/../../evil` climbs out",
        ),
        (
            "backslash dot-dot",
            zip_of(&[PROCFILE, E::File("..\\evil.bat", b"x")]),
            "entry `..\\evil.bat` climbs out",
        ),
        (
            "absolute",
            zip_of(&[PROCFILE, E::File("/etc/cron.d/x", b"x")]),
            "entry `/etc/cron.d/x` is an absolute path",
        ),
        (
            "drive letter",
            zip_of(&[PROCFILE, E::File("C:/Windows/x", b"x")]),
            "entry `C:/Windows/x` starts with a Windows drive letter",
        ),
        (
            "absolute symlink",
            zip_of(&[PROCFILE, E::Link("passwd", "/etc/passwd")]),
            "symlink `passwd` points to `/etc/passwd`, outside the bundle",
        ),
        (
            "climbing symlink",
            zip_of(&[PROCFILE, E::Link("lib/data", "../../data")]),
            "symlink `lib/data` points to `../../data`",
        ),
        (
            "through symlink",
            zip_of(&[
                PROCFILE,
                E::Link("etc", "conf"),
                E::File("etc/passwd", b"x"),
            ]),
            "entry `etc/passwd` goes through symlink `etc`",
        ),
        (
            "chained symlinks",
            zip_of(&[PROCFILE, E::Link("a", "b/.."), E::Link("b", "c")]),
            "entry `a` goes through symlink `b`",
        ),
        (
            "duplicate",
            zip_of(&[PROCFILE, E::File("x", b"1"), E::File("./x", b"2")]),
            "entries `x` (number 2 in the zip) and `./x` (number 3) name the same path",
        ),
        (
            "ratio",
            zip_of(&[PROCFILE, E::Deflated("zeros.bin", zeros)]),
            "entry `zeros.bin` expands",
        ),
        (
            "not a zip",
            b"PK but not really a zip".to_vec(),
            "the bundle is not a zip file",
        ),
        (
            "empty",
            zip_of(&[E::Dir("app/")]),
            "the bundle has no files",
        ),
    ];
    for (what, bytes, expected) in cases {
        let err = check(&bytes)
            .map(|p| format!("{p:?}"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(expected),
            "{what}: expected {expected:?} in {err:?}"
        );
    }
}

#[test]
fn bounds_are_configurable() {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..3 * 1024 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    let bundle = zip_of(&[PROCFILE, E::Deflated("a.txt", noise), E::File("b", b"x")]);
    let tight = |f: fn(&mut Limits)| {
        let mut limits = Limits::default();
        f(&mut limits);
        inspect(&spooled(&bundle), &limits, &Normalise::default())
            .unwrap_err()
            .to_string()
    };
    assert!(tight(|l| l.max_uncompressed_bytes = 1024 * 1024)
        .contains("expands to more than 1048576 bytes (passed at entry `a.txt`"));
    assert!(tight(|l| l.max_entries = 2).contains("has 3 entries; the bound is 2"));
    assert!(tight(|l| l.max_bundle_bytes = 100)
        .contains("Elastic Beanstalk accepts source bundles of at most 100 bytes"));
    assert!(tight(|l| {
        l.max_ratio = 0;
        l.ratio_floor_bytes = 0
    })
    .contains("entry `Procfile` expands"));
    // Within bounds it passes, ratio and all.
    assert!(check(&bundle).is_ok());
    // Spooling stops at the limit, however long the stream is.
    let err = Spooled::from_reader(&bundle[..], 100).unwrap_err();
    assert!(
        matches!(err, BundleError::TooLarge { max: 100, .. }),
        "{err}"
    );
}

#[test]
fn corrupt_data_is_caught_by_its_crc() {
    let mut bytes = zip_of(&[PROCFILE, E::File("data.txt", b"hello world, hello world")]);
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    let err = check(&bytes).unwrap_err().to_string();
    assert!(err.contains("entry `data.txt` is corrupt"), "{err}");
}

#[test]
fn overlapping_entries_are_a_bomb() {
    let mut bytes = zip_of(&[
        E::File("Procfile", b"web: x\n"),
        E::File("copy", b"web: x\n"),
    ]);
    // Point the second central directory record at the first entry's local header.
    let central: Vec<usize> = bytes
        .windows(4)
        .enumerate()
        .filter(|(_, w)| *w == [0x50, 0x4b, 0x01, 0x02])
        .map(|(i, _)| i)
        .collect();
    bytes[central[1] + 42..central[1] + 46].copy_from_slice(&0u32.to_le_bytes());
    let err = check(&bytes).unwrap_err().to_string();
    assert!(err.contains("overlap"), "{err}");
}

#[test]
fn plans_normalisation() {
    struct Case<'a> {
        what: &'a str,
        bundle: Vec<u8>,
        flattened: Option<&'a str>,
        names: Vec<&'a str>,
        dropped: usize,
        entry_point: Option<&'a str>,
    }
    let cases = vec![
        Case {
            what: "flat app",
            bundle: zip_of(&[PROCFILE, E::Dir("src/"), E::File("src/app.py", b"")]),
            flattened: None,
            names: vec!["Procfile", "src/", "src/app.py"],
            dropped: 0,
            entry_point: Some("Procfile"),
        },
        Case {
            what: "one top folder",
            bundle: zip_of(&[
                E::Dir("shop/"),
                E::File("shop/package.json", b"{}"),
                E::File("shop/lib/a.js", b""),
            ]),
            flattened: Some("shop"),
            names: vec!["package.json", "lib/a.js"],
            dropped: 0,
            entry_point: Some("package.json"),
        },
        Case {
            what: "Finder zip",
            bundle: zip_of(&[
                E::File("shop/Procfile", b"web: x"),
                E::File("__MACOSX/shop/._Procfile", b""),
                E::File("shop/.DS_Store", b""),
            ]),
            flattened: Some("shop"),
            names: vec!["Procfile"],
            dropped: 2,
            entry_point: Some("Procfile"),
        },
        Case {
            what: "Compress-Archive",
            bundle: zip_of(&[
                E::File("site\\index.php", b""),
                E::File("site\\lib\\a.php", b""),
            ]),
            flattened: Some("site"),
            names: vec!["index.php", "lib/a.php"],
            dropped: 0,
            entry_point: Some("index.php"),
        },
        Case {
            what: "a chain of single folders",
            bundle: zip_of(&[
                E::Dir("outer/"),
                E::Dir("outer/inner/"),
                E::File("outer/inner/Procfile", b"web: x"),
                E::File("outer/inner/src/app.py", b""),
            ]),
            flattened: Some("outer/inner"),
            names: vec!["Procfile", "src/app.py"],
            dropped: 0,
            entry_point: Some("Procfile"),
        },
        Case {
            what: "a chain without folder entries, in Windows' separators",
            bundle: zip_of(&[
                E::File("a\\b\\c\\index.php", b""),
                E::File("a\\b\\c\\lib\\x.php", b""),
            ]),
            flattened: Some("a/b/c"),
            names: vec!["index.php", "lib/x.php"],
            dropped: 0,
            entry_point: Some("index.php"),
        },
        Case {
            what: "a chain that stops where a folder holds something else",
            bundle: zip_of(&[
                E::File("outer/inner/app.py", b""),
                E::File("outer/README", b""),
            ]),
            flattened: Some("outer"),
            names: vec!["inner/app.py", "README"],
            dropped: 0,
            entry_point: None,
        },
        Case {
            what: "an empty folder beside the chain",
            bundle: zip_of(&[E::File("outer/inner/Procfile", b""), E::Dir("outer/logs/")]),
            flattened: Some("outer"),
            names: vec!["inner/Procfile", "logs/"],
            dropped: 0,
            entry_point: None,
        },
        Case {
            what: "a chain that stops before a folder meaningful at the root",
            bundle: zip_of(&[E::File("outer/.ebextensions/a.config", b"")]),
            flattened: Some("outer"),
            names: vec![".ebextensions/a.config"],
            dropped: 0,
            entry_point: None,
        },
        Case {
            what: "only .ebextensions",
            bundle: zip_of(&[E::File(".ebextensions/a.config", b"")]),
            flattened: None,
            names: vec![".ebextensions/a.config"],
            dropped: 0,
            entry_point: None,
        },
        Case {
            what: "a jar",
            bundle: zip_of(&[E::File("app.jar", b"")]),
            flattened: None,
            names: vec!["app.jar"],
            dropped: 0,
            entry_point: Some("app.jar"),
        },
        Case {
            what: "war contents",
            bundle: zip_of(&[E::File("WEB-INF/web.xml", b""), E::File("index.jsp", b"")]),
            flattened: None,
            names: vec!["WEB-INF/web.xml", "index.jsp"],
            dropped: 0,
            entry_point: Some("WEB-INF/"),
        },
        Case {
            what: "no entry point",
            bundle: zip_of(&[E::File("main.py", b"")]),
            flattened: None,
            names: vec!["main.py"],
            dropped: 0,
            entry_point: None,
        },
        Case {
            what: "symlink inside",
            bundle: zip_of(&[
                PROCFILE,
                E::Link("current", "releases/1"),
                E::File("releases/1/x", b""),
            ]),
            flattened: None,
            names: vec!["Procfile", "current", "releases/1/x"],
            dropped: 0,
            entry_point: Some("Procfile"),
        },
    ];
    for c in cases {
        let plan = check(&c.bundle).unwrap_or_else(|e| panic!("{}: {e}", c.what));
        assert_eq!(plan.flattened.as_deref(), c.flattened, "{}", c.what);
        assert_eq!(names(&plan), c.names, "{}", c.what);
        assert_eq!(plan.dropped.len(), c.dropped, "{}", c.what);
        assert_eq!(plan.entry_point.as_deref(), c.entry_point, "{}", c.what);
        assert_eq!(
            plan.warnings().is_empty(),
            c.entry_point.is_some(),
            "{}",
            c.what
        );
        assert_eq!(
            plan.needs_rewrite(),
            !plan.changes().is_empty(),
            "{}",
            c.what
        );
    }
}

#[test]
fn switches_turn_normalisation_off() {
    let bundle = zip_of(&[
        E::File("shop/Procfile", b"web: x"),
        E::File("shop/.DS_Store", b""),
    ]);
    let off = Normalise {
        flatten: false,
        drop_os_metadata: false,
        fix_backslashes: false,
    };
    let plan = inspect(&spooled(&bundle), &Limits::default(), &off).unwrap();
    assert!(!plan.needs_rewrite());
    assert_eq!(names(&plan), ["shop/Procfile", "shop/.DS_Store"]);
    assert!(plan.warnings()[0].contains("no Procfile or known entry point"));
}

#[test]
fn a_symlink_that_escapes_only_after_flattening_is_refused() {
    let bundle = zip_of(&[
        E::File("shop/Procfile", b"web: x"),
        E::Link("shop/data", "../shared"),
    ]);
    let err = check(&bundle).unwrap_err().to_string();
    assert!(
        err.contains("symlink `shop/data` points to `../shared`"),
        "{err}"
    );
}

#[test]
fn the_summary_says_which_folders_were_flattened() {
    let one = check(&zip_of(&[E::File("shop/Procfile", b"web: x")])).unwrap();
    assert!(
        one.changes()[0].contains(
            "every file sat under the top-level folder `shop/`, which Elastic Beanstalk would not look into; moved everything up out of `shop/` to the root"
        ),
        "{:?}",
        one.changes()
    );
    let chain = check(&zip_of(&[E::File("outer/inner/Procfile", b"web: x")])).unwrap();
    assert!(
        chain.changes()[0].contains(
            "every file sat under the folders `outer/inner/`, each holding nothing but the next, which Elastic Beanstalk would not look into; moved everything up out of `outer/inner/` to the root"
        ),
        "{:?}",
        chain.changes()
    );
}

#[test]
fn a_symlink_that_escapes_only_after_flattening_a_chain_is_refused() {
    // Inside the zip `data` points to `outer/shared`; once `outer/inner/` is flattened, out of the root.
    let bundle = zip_of(&[
        E::File("outer/inner/Procfile", b"web: x"),
        E::Link("outer/inner/data", "../shared"),
    ]);
    let err = check(&bundle).unwrap_err().to_string();
    assert!(
        err.contains("symlink `outer/inner/data` points to `../shared`, outside the bundle"),
        "{err}"
    );
}

#[test]
fn rewriting_streams_a_valid_deterministic_zip() {
    let bundle = zip_of(&[
        E::Dir("shop/"),
        E::File("shop/Procfile", b"web: python app.py\n"),
        E::Deflated("shop/app.py", b"print('hello')\n".repeat(1000)),
        E::Link("shop/current", "app.py"),
        E::File("__MACOSX/shop/._app.py", b"junk"),
    ]);
    let source = spooled(&bundle);
    let plan = inspect(&source, &Limits::default(), &Normalise::default()).unwrap();
    assert!(plan.needs_rewrite());
    let mut out = Vec::new();
    let written = write_normalised(&source, &plan, &mut out).unwrap();
    assert_eq!(written.size, out.len() as u64);
    assert_eq!(written, sha256_of(&out[..]).unwrap());
    let again = write_normalised(&source, &plan, io::sink()).unwrap();
    assert_eq!(again, written, "the same plan gives the same bytes");

    let result = spooled(&out);
    assert_eq!(result.sha256, written.sha256);
    let replan = inspect(&result, &Limits::default(), &Normalise::default()).unwrap();
    assert!(!replan.needs_rewrite(), "{replan:?}");
    assert_eq!(names(&replan), ["Procfile", "app.py", "current"]);
    let mut archive = ZipArchive::new(Cursor::new(out)).unwrap();
    // The summary's count is what ships: every entry of the written zip but folders.
    let shipped = (0..archive.len())
        .filter(|&i| !archive.by_index_raw(i).unwrap().is_dir())
        .count();
    assert_eq!((plan.files, replan.files, shipped), (3, 3, 3));
    let mut app = String::new();
    archive
        .by_name("app.py")
        .unwrap()
        .read_to_string(&mut app)
        .unwrap();
    assert_eq!(app, "print('hello')\n".repeat(1000));
    assert!(archive.by_name("current").unwrap().is_symlink());
}

#[test]
fn the_stream_writer_seeks_back_only_within_its_window() {
    let mut w = Windowed::new(Vec::new());
    w.write_all(b"abcdef").unwrap();
    assert_eq!(w.seek(SeekFrom::Start(1)).unwrap(), 1);
    w.write_all(b"XY").unwrap();
    assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 6);
    w.write_all(&vec![b'z'; 3 * SEEK_WINDOW]).unwrap();
    assert!(w.seek(SeekFrom::Start(0)).is_err(), "sent bytes are gone");
    let back = (3 * SEEK_WINDOW + 6 - 10) as u64;
    assert_eq!(w.seek(SeekFrom::Start(back)).unwrap(), back);
    w.write_all(b"!").unwrap();
    w.seek(SeekFrom::End(0)).unwrap();
    let out = w.into_inner().unwrap();
    assert_eq!(out.len(), 3 * SEEK_WINDOW + 6);
    assert_eq!(&out[..6], b"aXYdef");
    assert_eq!(out[back as usize], b'!');
}
