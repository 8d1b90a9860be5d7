use super::*;
use crate::names::RepositoryName;
use crate::package::{FileRecord, ImageRecord, PackageType, PackageVersion, VersionStatus};
use crate::service::VersionSelector;
use crate::service::{ArtifactRef, package_type_for};
use crate::template::{IdentifierKind, Position};
use bytes::Bytes;

const REGISTRY: &str = "registry.test:5000";

fn version(package: &str, package_type: PackageType, status: VersionStatus, repos: &[&str]) -> PackageVersion {
    PackageVersion {
        package: package.into(),
        version: "v_1".into(),
        number: 1,
        package_type,
        status,
        images: repos
            .iter()
            .map(|r| ImageRecord {
                digest: Some(format!("sha256:{}", "ab".repeat(32))),
                ..ImageRecord::unchecked(RepositoryName::parse(r).unwrap(), "v1")
            })
            .collect(),
        file: (package_type == PackageType::File).then(|| FileRecord {
            file_name: "f.tgz".into(),
            size: Some(1),
            digest: Some("sha256:00".into()),
        }),
        reason: (status == VersionStatus::Failed).then(|| "acme/x:v1 not found".into()),
        label: None,
        created_at: String::new(),
        updated_at: String::new(),
        untrusted: None,
    }
}

fn found(version: PackageVersion) -> Association {
    let file_url = version.file.as_ref().map(|f| format!("https://berth.test/v1/downloads/t/{}", f.file_name));
    Association::Found { version: Box::new(version), file_url }
}

fn associations() -> BTreeMap<String, Association> {
    BTreeMap::from([
        (
            "computenest::acrimage::nginx".into(),
            found(version("web", PackageType::ContainerImage, VersionStatus::Available, &["acme/nginx"])),
        ),
        (
            "computenest::helmchart::chart".into(),
            found(version("chart", PackageType::HelmChart, VersionStatus::Available, &["acme/charts/web"])),
        ),
        ("computenest::file::pkg".into(), found(version("pkg", PackageType::File, VersionStatus::Available, &[]))),
        (
            "computenest::acrimage::creating".into(),
            found(version("c", PackageType::ContainerImage, VersionStatus::Creating, &["acme/c"])),
        ),
        (
            "computenest::acrimage::failed".into(),
            found(version("f", PackageType::ContainerImage, VersionStatus::Failed, &["acme/f"])),
        ),
        (
            "computenest::acrimage::gone".into(),
            Association::Missing { code: "package_not_found", message: "package gone does not exist".into() },
        ),
    ])
}

#[test]
fn renders_every_kind_and_scopes_the_key_to_the_referenced_repositories() {
    let text = "image: {{ computenest::acrimage::nginx }}\nchart: {{computenest::helmchart::chart}}\n\
                url: '{{ computenest::file::pkg }}'\nkey: \"{{ computenest::acr::dockerconfigjson }}\"\n\
                helm: {{ computenest::helm::dockerconfigjson }} {{resolve:oos:x}} ${Var}\n";
    let template = Template::check("template", text.as_bytes()).unwrap();
    assert_eq!(
        template.association_keys().into_iter().collect::<Vec<_>>(),
        ["computenest::acrimage::nginx", "computenest::file::pkg", "computenest::helmchart::chart"]
    );
    let plan = template.plan(&associations(), REGISTRY, false).unwrap();
    assert!(plan.needs_pull_key());
    let repos: Vec<_> = plan.repositories.iter().map(RepositoryName::as_str).collect();
    assert_eq!(repos, ["acme/charts/web", "acme/nginx"]);
    assert_eq!(template.render(&plan, None).unwrap_err(), RenderError::NoPullKey);
    let out = template.render(&plan, Some("S0VZ")).unwrap().to_string();
    assert_eq!(
        out,
        "image: registry.test:5000/acme/nginx:v1\nchart: registry.test:5000/acme/charts/web:v1\n\
         url: 'https://berth.test/v1/downloads/t/f.tgz'\nkey: \"S0VZ\"\n\
         helm: S0VZ {{resolve:oos:x}} ${Var}\n"
    );
    // The same bytes whichever way the render is taken: HTTP chunks sharing the template's
    // memory, JSON escaped piece by piece, a reused buffer; and Debug shows no value.
    let rendered = template.render(&plan, Some("S0VZ")).unwrap();
    let source = Bytes::from(text);
    let again = Template::check("template", &source).unwrap();
    let chunks = again.render(&again.plan(&associations(), REGISTRY, false).unwrap(), Some("S0VZ")).unwrap();
    let chunks = chunks.chunks(&source);
    assert_eq!(chunks.concat(), out.as_bytes());
    assert!(chunks.iter().any(|c| source.as_ptr_range().contains(&c.as_ptr())), "kept text is shared, not copied");
    assert_eq!(serde_json::to_string(&rendered).unwrap(), serde_json::to_string(&out).unwrap());
    let mut json = Vec::new();
    rendered.write_json_string(&mut json);
    assert_eq!(json, serde_json::to_vec(&out).unwrap(), "SIMD escaping writes what serde_json writes");
    let output = RenderOutput {
        format: plan.format,
        rendered: Some(rendered.clone()),
        dry_run: false,
        substitutions: plan.substitutions.clone(),
        repositories: plan.repositories.clone(),
        pull_key: None,
    };
    let answer: serde_json::Value = serde_json::from_slice(&output.clone().into_json()).unwrap();
    assert_eq!(answer, serde_json::to_value(&output).unwrap());
    assert_eq!(answer["rendered"], out);
    let mut buffer = String::from("x");
    rendered.write_into(&mut buffer);
    assert_eq!((buffer.len(), &buffer[1..]), (out.len() + 1, out.as_str()));
    assert_eq!(rendered.len(), out.len());
    assert!(!format!("{rendered:?}").contains("S0VZ"));
    let pinned = template.plan(&associations(), REGISTRY, true).unwrap();
    let out = template.render(&pinned, Some("K")).unwrap().to_string();
    assert!(out.starts_with(&format!("image: registry.test:5000/acme/nginx@sha256:{}\n", "ab".repeat(32))), "{out}");
}

#[test]
fn every_problem_is_listed_with_its_position() {
    let text = "a: {{ computenest::acrimage::creating }}\nb: {{ computenest::acrimage::failed }}\n\
                c: {{ computenest::acrimage::unknown }} {{ computenest::bogus::x }}\n\
                d: {{ computenest::acrimage:: }}\ne: {{ computenest::helmchart::nginx }}\n\
                f: {{ computenest::acrimage::gone }}\ng: {{ computenest::file::nginx }}\n\
                h: {{ computenest::acrimage::nginx }}\ni: {{ computenest::acrimage::x\n";
    let mut associations = associations();
    associations.insert("computenest::helmchart::nginx".into(), associations["computenest::acrimage::nginx"].clone());
    associations.insert("computenest::file::nginx".into(), associations["computenest::acrimage::nginx"].clone());
    let template = Template::check("template", text.as_bytes()).unwrap();
    let problems = template.plan(&associations, REGISTRY, false).unwrap_err();
    let got: Vec<_> = problems.iter().map(|p| (p.position.to_string(), p.code)).collect();
    assert_eq!(
        got,
        [
            ("1:4".to_string(), "not_available"),
            ("2:4".to_string(), "not_available"),
            ("3:4".to_string(), "not_associated"),
            ("3:41".to_string(), "unknown_kind"),
            ("4:4".to_string(), "malformed_identifier"),
            ("5:4".to_string(), "wrong_package_type"),
            ("6:4".to_string(), "package_not_found"),
            ("7:4".to_string(), "wrong_package_type"),
            ("9:4".to_string(), "unclosed_identifier"),
        ]
    );
    assert!(problems[1].message.contains("Failed: acme/x:v1 not found"), "{}", problems[1].message);
}

#[test]
fn json_templates_keep_values_inside_strings() {
    let text = r#"{"a": "{{ computenest::acr::dockerconfigjson }}", "b": "x {{computenest::acrimage::nginx}}"}"#;
    let template = Template::check("template", text.as_bytes()).unwrap();
    assert_eq!(template.format(), TemplateFormat::Json);
    let plan = template.plan(&associations(), REGISTRY, false).unwrap();
    let out = template.render(&plan, Some("a\"b\\c")).unwrap().to_string();
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(parsed["a"], "a\"b\\c");
    assert_eq!(parsed["b"], "x registry.test:5000/acme/nginx:v1");
}

#[test]
fn cuts_at_the_edges_give_the_right_pieces() {
    let values = associations();
    for (text, expected) in [
        ("", ""),
        ("no identifiers\n", "no identifiers\n"),
        ("{{ computenest::acrimage::nginx }}", "registry.test:5000/acme/nginx:v1"),
        (
            "{{ computenest::acrimage::nginx }}{{computenest::file::pkg}}x",
            "registry.test:5000/acme/nginx:v1https://berth.test/v1/downloads/t/f.tgzx",
        ),
        ("a{{ computenest::acr::dockerconfigjson }}", "aKEY"),
        ("{{{ computenest::acrimage::nginx }}}", "{registry.test:5000/acme/nginx:v1}"),
    ] {
        let source = Bytes::copy_from_slice(text.as_bytes());
        let template = Template::check("template", &source).unwrap();
        let plan = template.plan(&values, REGISTRY, false).unwrap();
        let rendered = template.render(&plan, Some("KEY")).unwrap();
        assert_eq!(rendered.to_string(), expected, "{text:?}");
        assert_eq!(rendered.len(), expected.len(), "{text:?}");
        assert_eq!(rendered.chunks(&source).concat(), expected.as_bytes(), "{text:?}");
        assert!(rendered.chunks(&source).iter().all(|c| !c.is_empty()), "{text:?}");
        let mut json = Vec::new();
        rendered.write_json_string(&mut json);
        assert_eq!(json, serde_json::to_vec(expected).unwrap(), "{text:?}");
    }
}

#[test]
fn large_pieces_escape_in_bounded_slices() {
    // Two-byte characters and escapes across many slice boundaries, and no identifier at all.
    // Pieces of about 1 MiB, most lines with one escape as in real templates: unbounded, the
    // escaper would reserve six times the piece.
    let text = "name: é value \"x\"\n".repeat(50_000) + "{{ computenest::acrimage::nginx }}" + &"\t中".repeat(100_000);
    let template = Template::scan(&text);
    let plan = template.plan(&associations(), REGISTRY, false).unwrap();
    let output = RenderOutput {
        format: plan.format,
        rendered: Some(template.render(&plan, None).unwrap()),
        dry_run: false,
        substitutions: plan.substitutions.clone(),
        repositories: plan.repositories.clone(),
        pull_key: None,
    };
    let expected = serde_json::to_value(&output).unwrap();
    let json = output.into_json();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&json).unwrap(), expected);
    assert!(json.capacity() < json.len() * 2, "{} bytes in a buffer of {}", json.len(), json.capacity());
}

/// A spliced identifier: its text, and what it renders to or the problem code it raises.
fn spliced() -> impl proptest::strategy::Strategy<Value = (String, Result<&'static str, &'static str>)> {
    use proptest::prelude::*;
    prop_oneof![
        Just(("{{ computenest::acrimage::nginx }}".to_owned(), Ok("registry.test:5000/acme/nginx:v1"))),
        Just(("{{computenest::helmchart::chart}}".to_owned(), Ok("registry.test:5000/acme/charts/web:v1"))),
        Just(("{{  computenest::acr::dockerconfigjson }}".to_owned(), Ok("KEY"))),
        Just(("{{ computenest::acrimage::creating }}".to_owned(), Err("not_available"))),
        Just(("{{ computenest::acrimage::gone }}".to_owned(), Err("package_not_found"))),
        "[a-z]{1,8}".prop_map(|n| (format!("{{{{ computenest::file::zz{n} }}}}"), Err("not_associated"))),
        "[a-z]{1,8}".prop_map(|k| (format!("{{{{ computenest::{k}x::a }}}}"), Err("unknown_kind"))),
        Just(("{{ computenest::acrimage:: }}".to_owned(), Err("malformed_identifier"))),
        Just(("{{ computenest::helm::nope }}".to_owned(), Err("malformed_identifier"))),
        Just(("{{ computenest::file::x\n".to_owned(), Err("unclosed_identifier"))),
    ]
}

proptest::proptest! {
    /// Every offending identifier spliced into random text is reported, in order, at the
    /// line:column a naive count gives; with none, the output is the input with exactly
    /// those spans replaced, whichever way it is taken (string, HTTP chunks, JSON).
    #[test]
    fn every_spliced_problem_is_reported_where_it_is(
        parts in proptest::collection::vec(("[a-zé中 :\n{}-]{0,10}", spliced()), 0..8),
        tail in "[a-zé中 :\n-]{0,10}",
    ) {
        let mut text = String::new();
        let mut spliced = String::new();
        let mut expected = Vec::new();
        for (filler, (identifier, outcome)) in &parts {
            // Keep filler from completing an identifier or braces around one.
            let filler = filler.replace('{', "(").replace('}', ")");
            text.push_str(&filler);
            spliced.push_str(&filler);
            match outcome {
                Ok(value) => spliced.push_str(value),
                Err(code) => {
                    let line = text.matches('\n').count() + 1;
                    let column = text.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                    expected.push((Position { line, column }, *code));
                }
            }
            text.push_str(identifier);
        }
        text.push_str(&tail);
        spliced.push_str(&tail);
        let source = Bytes::from(text.clone());
        let template = Template::check("template", &source).unwrap();
        match template.plan(&associations(), REGISTRY, false) {
            Ok(plan) => {
                proptest::prop_assert!(expected.is_empty(), "{:?}", expected);
                let rendered = template.render(&plan, Some("KEY")).unwrap();
                proptest::prop_assert_eq!(rendered.to_string(), spliced.clone());
                proptest::prop_assert_eq!(rendered.len(), spliced.len());
                proptest::prop_assert_eq!(rendered.chunks(&source).concat(), spliced.as_bytes());
                let mut json = Vec::new();
                rendered.write_json_string(&mut json);
                proptest::prop_assert_eq!(json, serde_json::to_vec(&spliced).unwrap());
            }
            Err(problems) => {
                let got: Vec<_> = problems.iter().map(|p| (p.position, p.code)).collect();
                proptest::prop_assert_eq!(got, expected);
            }
        }
    }

    /// Any text and any value, control characters included, escape into the JSON answer
    /// exactly as serde_json escapes the whole rendered string.
    #[test]
    fn the_json_answer_escapes_like_serde_json(
        before in proptest::prelude::any::<String>(),
        value in proptest::prelude::any::<String>(),
        after in proptest::prelude::any::<String>(),
    ) {
        proptest::prop_assume!(!(before.clone() + &after).contains("computenest"));
        let text = format!("{before}{{{{ computenest::file::f }}}}{after}");
        let mut file = version("f", PackageType::File, VersionStatus::Available, &[]);
        file.package = "f".into();
        let associations = BTreeMap::from([(
            "computenest::file::f".to_owned(),
            Association::Found { version: Box::new(file), file_url: Some(value) },
        )]);
        let template = Template::scan(&text);
        let plan = template.plan(&associations, REGISTRY, false).unwrap();
        let rendered = template.render(&plan, None).unwrap();
        let mut json = Vec::new();
        rendered.write_json_string(&mut json);
        proptest::prop_assert_eq!(json, serde_json::to_vec(&rendered.to_string()).unwrap());
    }

    /// In a JSON template, any value (quotes, backslashes, control characters, any
    /// script) stays inside its string: the output parses and each string is the input's
    /// with the identifiers' values in place.
    #[test]
    fn json_templates_parse_whatever_the_values(
        parts in proptest::collection::vec(("[a-z {}:,]{0,6}", "\\PC{0,12}"), 1..5),
    ) {
        let mut template = String::from("{");
        let mut expected = serde_json::Map::new();
        let mut associations = BTreeMap::new();
        for (i, (text, value)) in parts.iter().enumerate() {
            let mut file = version("f", PackageType::File, VersionStatus::Available, &[]);
            file.package = format!("p{i}");
            associations.insert(
                format!("computenest::file::f{i}"),
                Association::Found { version: Box::new(file), file_url: Some(value.clone()) },
            );
            let literal = serde_json::to_string(text).unwrap();
            let inner = &literal[1..literal.len() - 1];
            if i > 0 {
                template.push_str(", ");
            }
            template.push_str(&format!("\"k{i}\": \"{inner}{{{{ computenest::file::f{i} }}}}{inner}\""));
            expected.insert(format!("k{i}"), serde_json::Value::String(format!("{text}{value}{text}")));
        }
        template.push('}');
        let parsed = Template::scan(&template);
        let plan = parsed.plan(&associations, REGISTRY, false).unwrap();
        let rendered = parsed.render(&plan, None).unwrap();
        let out = rendered.to_string();
        // The JSON answer's SIMD escaping of the pieces writes what serde_json writes.
        let mut json = Vec::new();
        rendered.write_json_string(&mut json);
        proptest::prop_assert_eq!(&json, &serde_json::to_vec(&out).unwrap());
        let got: serde_json::Value = serde_json::from_str(&out).unwrap();
        proptest::prop_assert_eq!(got, serde_json::Value::Object(expected));
    }
}

#[test]
fn size_and_encoding_are_checked() {
    let big = vec![b'a'; MAX_TEMPLATE_BYTES + 1];
    assert!(matches!(Template::check("template", &big), Err(ApiError::TooLarge { .. })));
    assert!(Template::check("template", &big[1..]).is_ok());
    let bad = b"a: 1\nb: \xc3\xa9\xff\n";
    match Template::check("template", bad) {
        Err(ApiError::Invalid { field, code, message }) => {
            assert_eq!((field.as_str(), code), ("template", "invalid_utf8"));
            assert!(message.ends_with("at 2:5"), "{message}");
        }
        other => panic!("expected invalid_utf8, got {other:?}"),
    }
}

/// `/work/shared/corpus/ros`: real Compute Nest templates and their `config.yaml`s.
fn corpus_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/ros")
}

/// A package name made from anything (config ids, identifier names).
fn package_name(raw: &str) -> String {
    let name: String = raw.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("pkg_{name}")
}

/// Every `ArtifactId` in a config, mapped to a package name, so its relations import.
fn artifact_ids(value: &yaml_serde::Value, out: &mut BTreeMap<String, String>) {
    match value {
        yaml_serde::Value::Mapping(mapping) => {
            for (key, child) in mapping {
                if let (Some("ArtifactId"), Some(id)) = (key.as_str(), child.as_str()) {
                    out.insert(id.to_owned(), package_name(id));
                }
                artifact_ids(child, out);
            }
        }
        yaml_serde::Value::Sequence(list) => list.iter().for_each(|child| artifact_ids(child, out)),
        _ => {}
    }
}

/// An Available version of the right type for an identifier kind.
fn available_for(kind: IdentifierKind, target: &ArtifactRef, name: &str) -> Association {
    let package_type = package_type_for(kind).unwrap();
    let repository: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { 'x' }).collect();
    let mut v = version(&target.package, package_type, VersionStatus::Available, &[&format!("acme/{repository}")]);
    if package_type == PackageType::File {
        v.images.clear();
    }
    found(v)
}

#[test]
fn every_corpus_template_renders_with_only_its_identifiers_replaced() {
    let oracle =
        regex::Regex::new(r"\{\{ *computenest::(acrimage|acr|helmchart|helm|file)::([A-Za-z0-9_-]+) *\}\}").unwrap();
    let mut rendered = 0;
    let mut from_config = 0;
    let mut entries: Vec<_> = std::fs::read_dir(corpus_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file == "MANIFEST.tsv" || file.ends_with("config.yaml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let template = Template::check("template", &bytes).unwrap();
        assert!(!template.identifiers().is_empty(), "{file}: the corpus holds templates with identifiers");
        // Relations from the repository's config.yaml, where there is one.
        let repo = file.split("__").take(2).collect::<Vec<_>>().join("__");
        let config = corpus_dir().join(format!("{repo}__.computenest__config.yaml"));
        let mut relations = BTreeMap::new();
        if let Ok(config) = std::fs::read_to_string(&config) {
            let mut artifacts = BTreeMap::new();
            artifact_ids(&yaml_serde::from_str(&config).unwrap(), &mut artifacts);
            relations = relations_from_config(&config, &artifacts).unwrap_or_else(|e| panic!("{file}: {e}"));
            from_config += relations.len();
        }
        // Generated where the config lacks them.
        let mut associations = BTreeMap::new();
        for identifier in template.identifiers().iter().filter(|i| !i.kind.is_credential()) {
            let target = relations
                .entry(identifier.key.to_owned())
                .or_insert_with(|| ArtifactRef {
                    package: package_name(identifier.name()),
                    version: VersionSelector::Latest,
                })
                .clone();
            associations.insert(identifier.key.to_owned(), available_for(identifier.kind, &target, identifier.name()));
        }
        let plan = template.plan(&associations, REGISTRY, false).unwrap_or_else(|p| panic!("{file}: {p:?}"));
        let out = template.render(&plan, Some("eyJhdXRocyI6e319")).unwrap().to_string();

        let text = std::str::from_utf8(&bytes).unwrap();
        assert!(!out.contains("computenest::"), "{file}: an identifier remains");
        // Independent oracle: a regex replacing exactly the identifiers gives the same bytes.
        let values: BTreeMap<String, String> = plan
            .substitutions
            .iter()
            .map(|s| match &s.value {
                Value::Text(text) => (s.key.to_owned(), text.to_string()),
                Value::PullKey => (s.key.to_owned(), "eyJhdXRocyI6e319".to_owned()),
            })
            .collect();
        let expected = oracle
            .replace_all(text, |c: &regex::Captures<'_>| values[&format!("computenest::{}::{}", &c[1], &c[2])].clone());
        assert!(out == expected, "{file}: bytes outside identifiers changed");
        let before: Result<yaml_serde::Value, _> = yaml_serde::from_str(text);
        let after: Result<yaml_serde::Value, _> = yaml_serde::from_str(&out);
        assert!(
            after.is_ok(),
            "{file}: output does not parse as YAML: {:?} (input parsed: {})",
            after.err(),
            before.is_ok()
        );
        rendered += 1;
    }
    eprintln!("corpus: {rendered} templates rendered, {from_config} relations from config.yaml");
    assert!(rendered >= 20, "only {rendered} corpus templates found in {}", corpus_dir().display());
    assert!(from_config >= 15, "only {from_config} relations came from config.yaml files");
}

#[test]
fn a_version_with_several_images_is_picked_by_name() {
    let text = "{{ computenest::acrimage::db }} {{ computenest::acrimage::other }}";
    let several = found(version("s", PackageType::ContainerImage, VersionStatus::Available, &["acme/web", "acme/db"]));
    let associations = BTreeMap::from([
        ("computenest::acrimage::db".to_string(), several.clone()),
        ("computenest::acrimage::other".to_string(), several),
    ]);
    let problems = Template::scan(text).plan(&associations, REGISTRY, false).unwrap_err();
    assert_eq!(problems.len(), 1);
    assert_eq!((problems[0].position.to_string().as_str(), problems[0].code), ("1:33", "ambiguous_image"));
}
