//! `make bench` part: template render throughput on the real corpus concatenated to at least
//! 50 MiB (scan with positions, plan, write), against a `regex::Regex::replace_all` baseline
//! doing only the replacement over the same input, in the same process and run.
//!
//! Lines printed: the whole input as one template into a fresh String (what the API does per
//! template), the same into an output buffer reused across runs, the regex baseline, and both
//! over the input cut into templates of at most 10 MiB (the API's limit), where the allocator
//! reuses warm memory. `RENDER_BENCH_PARTS=1` also prints the cost of the scan, a plain copy,
//! newline counting and the `{{` search alone.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use berth_shared::package::{FileRecord, ImageRecord, PackageType, PackageVersion, VersionStatus};
use berth_shared::render::{Association, Template};
use berth_shared::repository::RepositoryName;
use berth_shared::service::package_type_for;
use berth_shared::template::MAX_TEMPLATE_BYTES;

const TARGET_BYTES: usize = 50 << 20;
const RUNS: usize = 5;
const PULL_KEY: &str = "eyJhdXRocyI6eyIxMjcuMC4wLjE6NTAwMCI6eyJ1c2VybmFtZSI6ImFjbWUifX19";

/// Every corpus file but the manifest, concatenated until at least [`TARGET_BYTES`].
fn corpus() -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/ros");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    let one: String = files.iter().map(|p| std::fs::read_to_string(p).expect("UTF-8 corpus file") + "\n").collect();
    let mut text = String::with_capacity(TARGET_BYTES + one.len());
    while text.len() < TARGET_BYTES {
        text.push_str(&one);
    }
    text
}

/// `text` cut at line ends into pieces of at most [`MAX_TEMPLATE_BYTES`].
fn chunks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
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

/// An Available version for every association key of `template`.
fn associations(template: &Template<'_>) -> BTreeMap<String, Association> {
    let mut out = BTreeMap::new();
    for identifier in template.identifiers().iter().filter(|i| !i.kind.is_credential()) {
        let package_type = package_type_for(identifier.kind).expect("not a credential");
        let repository: String = identifier
            .name
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
                    repository: RepositoryName::parse(&format!("acme/{repository}")).expect("repository"),
                    tag: "v1".into(),
                    digest: Some(format!("sha256:{}", "ab".repeat(32))),
                    media_type: None,
                    size: None,
                    platforms: Vec::new(),
                    failure: None,
                }],
            },
            file: (package_type == PackageType::File).then(|| FileRecord {
                file_name: "f.tgz".into(),
                size: Some(1),
                digest: Some("sha256:00".into()),
            }),
            reason: None,
            created_at: String::new(),
            updated_at: String::new(),
        };
        let file_url = (package_type == PackageType::File).then(|| format!("https://berth.example/d/{repository}"));
        out.insert(identifier.key(), Association::Found { version: Box::new(version), file_url });
    }
    out
}

/// Best wall time of [`RUNS`] runs of `work`, and its last result.
fn best<T>(mut work: impl FnMut() -> T) -> (Duration, T) {
    let mut fastest = Duration::MAX;
    let mut last = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = std::hint::black_box(work());
        fastest = fastest.min(start.elapsed());
        last = Some(out);
    }
    (fastest, last.expect("at least one run"))
}

fn mb_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / time.as_secs_f64()
}

fn main() {
    let text = corpus();
    let scanned = Template::scan(&text);
    let associations = associations(&scanned);
    let identifiers = scanned.identifiers().len();

    if std::env::var_os("RENDER_BENCH_PARTS").is_some() {
        let (t, _) = best(|| Template::scan(&text).identifiers().len());
        eprintln!("part scan {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
        let (t, _) = best(|| text.to_owned());
        eprintln!("part copy {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
        let (t, _) = best(|| memchr::memchr_iter(b'\n', text.as_bytes()).count());
        eprintln!("part newlines {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
        let (t, _) = best(|| memchr::memmem::find_iter(text.as_bytes(), b"{{").count());
        eprintln!("part memmem {:.0} MB/s ({t:.2?})", mb_per_s(text.len(), t));
    }
    // Berth: scan (positions included), decide every value, write the output.
    let (ours, rendered) = best(|| {
        let template = Template::scan(&text);
        let plan = template.plan(&associations, "127.0.0.1:5000", false).expect("the corpus renders");
        template.render(&plan, Some(PULL_KEY)).expect("renders")
    });

    // The same into one output buffer reused across runs, as a renderer serving many
    // templates would: no fresh allocation to fault in each time.
    let mut buffer = String::with_capacity(rendered.len());
    let (reused, _) = best(|| {
        buffer.clear();
        let template = Template::scan(&text);
        let plan = template.plan(&associations, "127.0.0.1:5000", false).expect("the corpus renders");
        template.render_into(&mut buffer, &plan, Some(PULL_KEY)).expect("renders");
        buffer.len()
    });
    assert!(buffer == rendered, "the reused buffer holds the same output");

    // The same input as templates of at most 10 MiB, the API's limit: each rendered into a
    // fresh String, as the API does, dropped before the next.
    let chunks = chunks(&text);
    let (chunked, chunked_bytes) = best(|| {
        let mut bytes = 0;
        for chunk in &chunks {
            let template = Template::scan(chunk);
            let plan = template.plan(&associations, "127.0.0.1:5000", false).expect("the corpus renders");
            bytes += template.render(&plan, Some(PULL_KEY)).expect("renders").len();
        }
        bytes
    });
    assert_eq!(chunked_bytes, rendered.len(), "the chunks render to as many bytes as the whole");

    // Baseline: one regex, replace_all, values from a map by key.
    let values: HashMap<String, String> = {
        let plan = scanned.plan(&associations, "127.0.0.1:5000", false).expect("the corpus renders");
        plan.substitutions
            .iter()
            .map(|s| {
                let value = match &s.value {
                    berth_shared::render::Value::Text(text) => text.clone(),
                    berth_shared::render::Value::PullKey => PULL_KEY.to_owned(),
                };
                (s.key.clone(), value)
            })
            .collect()
    };
    let regex =
        regex::Regex::new(r"\{\{ *computenest::(acrimage|acr|helmchart|helm|file)::([A-Za-z0-9_-]+) *\}\}").unwrap();
    let (baseline, replaced) = best(|| {
        regex
            .replace_all(&text, |c: &regex::Captures<'_>| values[&format!("computenest::{}::{}", &c[1], &c[2])].clone())
            .into_owned()
    });
    assert!(rendered == replaced, "Berth and the regex baseline disagree on the output");
    let (chunked_baseline, _) = best(|| {
        chunks
            .iter()
            .map(|chunk| {
                regex
                    .replace_all(chunk, |c: &regex::Captures<'_>| {
                        values[&format!("computenest::{}::{}", &c[1], &c[2])].clone()
                    })
                    .len()
            })
            .sum::<usize>()
    });

    let (ours_rate, baseline_rate) = (mb_per_s(text.len(), ours), mb_per_s(text.len(), baseline));
    let reused_rate = mb_per_s(text.len(), reused);
    println!(
        "render: {:.1} MiB of corpus templates, {identifiers} identifiers; best of {RUNS} runs",
        text.len() as f64 / (1 << 20) as f64
    );
    println!("render  berth (scan + positions + plan + write)  {ours_rate:>9.0} MB/s  ({ours:.2?})");
    println!("render  berth into a reused output buffer        {reused_rate:>9.0} MB/s  ({reused:.2?})");
    println!("render  regex replace_all baseline             {baseline_rate:>9.0} MB/s  ({baseline:.2?})");
    let (chunked_rate, chunked_baseline_rate) = (mb_per_s(text.len(), chunked), mb_per_s(text.len(), chunked_baseline));
    println!(
        "render  as {} templates of <= 10 MiB: berth {chunked_rate:.0} MB/s, regex {chunked_baseline_rate:.0} MB/s, ratio {:.1}x",
        chunks.len(),
        chunked_rate / chunked_baseline_rate
    );
    println!("render  ratio berth / regex (both fresh output) {:>8.1}x", ours_rate / baseline_rate);
    println!("render  ratio berth reused buffer / regex       {:>8.1}x", reused_rate / baseline_rate);
}
