//! Renders the ROS corpus (concatenated to 50 MiB, cut into templates of at most 10 MiB, as
//! render-bench does) for a profiler: `valgrind --tool=callgrind target/release/examples/render_profile
//! STAGE RUNS`, STAGE one of scan, plan, render (scan + plan + pieces), copy (a plain copy of
//! the same bytes), none (only the set-up, to subtract). Instruction counts stay repeatable on a
//! loaded machine where wall times do not. STAGE ratio prints render-bench's goal ratios (best
//! of RUNS turns of a copy and a render, in turn).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::string_slice, reason = "a profiling harness")]

use std::collections::BTreeMap;

use berth_shared::names::RepositoryName;
use berth_shared::package::{FileRecord, ImageRecord, PackageType, PackageVersion, VersionStatus};
use berth_shared::render::{Association, Template};
use berth_shared::service::package_type_for;
use berth_shared::template::MAX_TEMPLATE_BYTES;

fn corpus() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/ros");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let one: String = files.iter().map(|p| std::fs::read_to_string(p).unwrap() + "\n").collect();
    let mut text = String::with_capacity((50 << 20) + one.len());
    while text.len() < 50 << 20 {
        text.push_str(&one);
    }
    text
}

fn chunks(mut rest: &str) -> Vec<&str> {
    let mut out = Vec::new();
    while !rest.is_empty() {
        let cut = if rest.len() <= MAX_TEMPLATE_BYTES {
            rest.len()
        } else {
            rest[..MAX_TEMPLATE_BYTES].rfind('\n').map_or(MAX_TEMPLATE_BYTES, |i| i + 1)
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

fn associations(template: &Template<'_>) -> BTreeMap<String, Association> {
    let mut out = BTreeMap::new();
    for identifier in template.identifiers().iter().filter(|i| !i.kind.is_credential()) {
        let package_type = package_type_for(identifier.kind).unwrap();
        let repository: String = identifier
            .name()
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { 'x' })
            .collect();
        let version = PackageVersion {
            package: format!("pkg_{repository}"),
            version: "v_1".into(),
            number: 1,
            package_type,
            status: VersionStatus::Available,
            images: match package_type {
                PackageType::File => Vec::new(),
                _ => vec![ImageRecord {
                    digest: Some(format!("sha256:{}", "ab".repeat(32))),
                    ..ImageRecord::unchecked(RepositoryName::parse(&format!("acme/{repository}")).unwrap(), "v1")
                }],
            },
            file: (package_type == PackageType::File).then(|| FileRecord {
                file_name: "f.tgz".into(),
                size: Some(1),
                digest: Some("sha256:00".into()),
            }),
            reason: None,
            label: None,
            created_at: String::new(),
            updated_at: String::new(),
            untrusted: None,
        };
        let file_url = (package_type == PackageType::File).then(|| format!("https://berth.example/d/{repository}"));
        out.insert(identifier.key.to_owned(), Association::Found { version: Box::new(version), file_url });
    }
    out
}

fn main() {
    let stage = std::env::args().nth(1).unwrap_or_else(|| "render".into());
    let runs: usize = std::env::args().nth(2).map_or(1, |n| n.parse().unwrap());
    let text = corpus();
    let templates = chunks(&text);
    let associations = associations(&Template::scan(&text));
    let mut copy = String::with_capacity(text.len());
    if stage == "ratio" {
        // As render-bench's goal lines: best of `runs` turns of a plain copy and a render, in turn.
        let render = |t: &str| {
            let template = Template::scan(t);
            let plan = template.plan(&associations, "127.0.0.1:5000", false).unwrap();
            template.render(&plan, Some("eyJhdXRocyI6e319")).unwrap().len()
        };
        for (what, parts) in [("templates <= 10 MiB", templates.clone()), ("one 50 MiB template", vec![text.as_str()])]
        {
            let (mut copied, mut rendered) = (std::time::Duration::MAX, std::time::Duration::MAX);
            for _ in 0..runs {
                let started = std::time::Instant::now();
                copy.clear();
                parts.iter().for_each(|t| copy.push_str(t));
                std::hint::black_box(copy.len());
                copied = copied.min(started.elapsed());
                let started = std::time::Instant::now();
                std::hint::black_box(parts.iter().map(|t| render(t)).sum::<usize>());
                rendered = rendered.min(started.elapsed());
            }
            println!(
                "{what}: render / plain copy {:.2}x (copy {copied:.2?}, render {rendered:.2?})",
                copied.as_secs_f64() / rendered.as_secs_f64()
            );
        }
        return;
    }
    let started = std::time::Instant::now();
    for _ in 0..runs {
        let bytes: usize = match stage.as_str() {
            "none" => 0,
            "copy" => {
                copy.clear();
                templates.iter().for_each(|t| copy.push_str(t));
                copy.len()
            }
            "scan" => templates.iter().map(|t| Template::scan(t).identifiers().len()).sum(),
            "plan" => templates
                .iter()
                .map(|t| Template::scan(t).plan(&associations, "127.0.0.1:5000", false).unwrap().substitutions.len())
                .sum(),
            "render" => templates
                .iter()
                .map(|t| {
                    let template = Template::scan(t);
                    let plan = template.plan(&associations, "127.0.0.1:5000", false).unwrap();
                    template.render(&plan, Some("eyJhdXRocyI6e319")).unwrap().len()
                })
                .sum(),
            other => panic!("unknown stage {other}"),
        };
        std::hint::black_box(bytes);
    }
    eprintln!("{stage} x{runs}: {:.2?} a run", started.elapsed() / runs.max(1) as u32);
}
