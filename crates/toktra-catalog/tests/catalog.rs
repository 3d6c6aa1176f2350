//! The embedded catalog's coverage, the matching rules, and validation errors.

use toktra_catalog::{
    ApiShape, Catalog, CatalogError, Category, EntryProblem, RuleProblem, ShapeProblem,
    ShapeProfile,
};

fn product(host: &str) -> Option<&'static str> {
    Catalog::embedded().lookup(host).map(|e| e.id.as_str())
}

#[test]
fn embedded_catalog_is_large_and_versioned() {
    let c = Catalog::embedded();
    assert!(
        c.entries().len() >= 60,
        "only {} entries",
        c.entries().len()
    );
    assert_eq!(c.schema(), 1);
    assert!(!c.version().is_empty());
    for cat in Category::ALL {
        let n = c.entries().iter().filter(|e| e.category == cat).count();
        assert!(n >= 4, "category {cat} has only {n} entries");
    }
    for e in c.entries() {
        assert!(!e.hosts.is_empty(), "{}", e.id);
        if e.price_input_per_mtok.is_some() {
            assert!(e.price_model.is_some(), "{}", e.id);
        }
    }
}

#[test]
fn required_products_are_found_by_their_real_hosts() {
    let cases = [
        ("api.openai.com", "openai-api"),
        ("chatgpt.com", "chatgpt"),
        ("chat.openai.com", "chatgpt"),
        ("api.anthropic.com", "anthropic-api"),
        ("claude.ai", "claude"),
        ("generativelanguage.googleapis.com", "gemini-api"),
        ("gemini.google.com", "gemini-app"),
        ("us-central1-aiplatform.googleapis.com", "vertex-ai"),
        ("europe-west4-aiplatform.googleapis.com", "vertex-ai"),
        ("aiplatform.googleapis.com", "vertex-ai"),
        ("contoso.openai.azure.com", "azure-openai"),
        ("contoso.services.ai.azure.com", "azure-ai-foundry"),
        ("contoso.cognitiveservices.azure.com", "azure-ai-foundry"),
        (
            "bedrock-runtime.us-east-1.amazonaws.com",
            "aws-bedrock-runtime",
        ),
        (
            "bedrock-runtime.eu-central-1.amazonaws.com",
            "aws-bedrock-runtime",
        ),
        (
            "bedrock-runtime.ap-southeast-2.amazonaws.com",
            "aws-bedrock-runtime",
        ),
        (
            "bedrock-runtime-fips.us-west-2.amazonaws.com",
            "aws-bedrock-runtime",
        ),
        (
            "bedrock-runtime.us-gov-west-1.amazonaws.com",
            "aws-bedrock-runtime",
        ),
        ("api.mistral.ai", "mistral-api"),
        ("api.cohere.com", "cohere-api"),
        ("api.groq.com", "groq-api"),
        ("api.together.xyz", "together-api"),
        ("api.fireworks.ai", "fireworks-api"),
        ("api.deepseek.com", "deepseek-api"),
        ("api.x.ai", "xai-api"),
        ("grok.com", "grok"),
        ("api.perplexity.ai", "perplexity-api"),
        ("www.perplexity.ai", "perplexity"),
        ("openrouter.ai", "openrouter"),
        ("api-inference.huggingface.co", "huggingface-inference"),
        ("router.huggingface.co", "huggingface-inference"),
        ("api.replicate.com", "replicate-api"),
        ("copilot.microsoft.com", "microsoft-copilot"),
        ("api.githubcopilot.com", "github-copilot"),
        ("api.individual.githubcopilot.com", "github-copilot"),
        ("api2.cursor.sh", "cursor"),
        ("server.codeium.com", "windsurf"),
        ("api.tabnine.com", "tabnine"),
        ("sourcegraph.com", "sourcegraph-cody"),
        ("api.jetbrains.ai", "jetbrains-ai"),
        ("q.us-east-1.amazonaws.com", "amazon-q-developer"),
        (
            "codewhisperer.us-east-1.amazonaws.com",
            "amazon-q-developer",
        ),
        ("www.meta.ai", "meta-ai"),
        ("poe.com", "poe"),
        ("character.ai", "character-ai"),
        ("neo.character.ai", "character-ai"),
    ];
    for (host, id) in cases {
        assert_eq!(product(host), Some(id), "{host}");
    }
}

#[test]
fn matching_ignores_case_and_one_trailing_dot() {
    assert_eq!(product("API.OPENAI.COM"), Some("openai-api"));
    assert_eq!(product("Api.OpenAI.com."), Some("openai-api"));
    assert_eq!(
        product("BEDROCK-RUNTIME.US-EAST-1.AMAZONAWS.COM."),
        Some("aws-bedrock-runtime")
    );
    assert_eq!(product("api.openai.com.."), None);
}

#[test]
fn unknown_names_ip_literals_and_junk_match_nothing() {
    for host in [
        "",
        ".",
        "..",
        "example.com",
        "openai.com.evil.example",
        "notopenai.com",
        "api.openai.com.example.net",
        "192.0.2.1",
        "2001:db8::1",
        "[2001:db8::1]",
        "a..chatgpt.com",
        "s3.us-east-1.amazonaws.com",
        "azure.com",
        "openai.azure.com",
        "googleapis.com",
        "-aiplatform.googleapis.com",
        "api.openaı.com",
    ] {
        assert_eq!(product(host), None, "{host:?}");
    }
    let long = format!("{}.chatgpt.com", "a.".repeat(200));
    assert_eq!(product(&long), None, "over 253 characters");
}

#[test]
fn subdomain_rules_need_the_apex_listed_separately() {
    // ".cursor.sh" only: the apex is not the product.
    assert_eq!(product("api2.cursor.sh"), Some("cursor"));
    assert_eq!(product("a.b.cursor.sh"), Some("cursor"));
    assert_eq!(product("cursor.sh"), None);
    // "claude.ai" and ".claude.ai" both listed.
    assert_eq!(product("claude.ai"), Some("claude"));
    assert_eq!(product("x.claude.ai"), Some("claude"));
}

#[test]
fn a_wildcard_stands_for_exactly_one_label() {
    assert_eq!(product("a.openai.azure.com"), Some("azure-openai"));
    assert_eq!(product("a.b.openai.azure.com"), None);
    assert_eq!(product("bedrock-runtime.amazonaws.com"), None);
    assert_eq!(product("bedrock-runtime.a.b.amazonaws.com"), None);
    assert_eq!(product("x.bedrock-runtime.us-east-1.amazonaws.com"), None);
}

#[test]
fn more_specific_host_wins_in_the_embedded_catalog() {
    // api.perplexity.ai (exact) over .perplexity.ai; sora.chatgpt.com over .chatgpt.com.
    assert_eq!(product("api.perplexity.ai"), Some("perplexity-api"));
    assert_eq!(product("sora.chatgpt.com"), Some("sora"));
    let m = Catalog::embedded().lookup_match("ab.chatgpt.com");
    assert_eq!(m.map(|m| m.rule), Some(".chatgpt.com"));
}

const HEAD: &str = "schema = 1\nversion = \"t\"\n";

fn entry(id: &str, hosts: &str) -> String {
    format!(
        "[[entry]]\nid = \"{id}\"\nprovider = \"p\"\nproduct = \"P {id}\"\ncategory = \"api\"\n\
         request_bytes_per_token = 4.0\nresponse_bytes_per_token = 4.0\nhosts = [{hosts}]\n"
    )
}

fn catalog(entries: &[(&str, &str)]) -> Catalog {
    let mut t = HEAD.to_owned();
    for (id, hosts) in entries {
        t.push_str(&entry(id, hosts));
    }
    match Catalog::from_toml(&t) {
        Ok(c) => c,
        Err(e) => panic!("{e}\n{t}"),
    }
}

fn id_of<'a>(c: &'a Catalog, host: &str) -> Option<&'a str> {
    c.lookup(host).map(|e| e.id.as_str())
}

#[test]
fn specificity_order_is_as_documented() {
    let c = catalog(&[
        ("exact", r#""a.b.example.com""#),
        ("sub", r#"".example.com""#),
        ("sub-b", r#"".b.example.com""#),
        ("wild", r#""*.b.example.com""#),
        ("two-wild", r#""*.*.example.com""#),
        ("wild-mid", r#""a.*.example.com""#),
        ("glob", r#""*-x.c.example.com""#),
        ("wild-c", r#""*.c.example.com""#),
    ]);
    // 1. exact beats everything.
    assert_eq!(id_of(&c, "a.b.example.com"), Some("exact"));
    // 2. more literal labels: .b.example.com (3) over .example.com (2).
    assert_eq!(id_of(&c, "z.b.example.com"), Some("sub-b"));
    assert_eq!(id_of(&c, "y.z.b.example.com"), Some("sub-b"));
    // 3. fewer wildcards: a.*.example.com (3 literal, 1 wildcard) over
    //    *.*.example.com (2 literal).
    assert_eq!(id_of(&c, "a.q.example.com"), Some("wild-mid"));
    //    At equal literal counts, .example.com (no wildcard) over *.*.example.com.
    assert_eq!(id_of(&c, "r.q.example.com"), Some("sub"));
    let w = catalog(&[
        ("one-wild", r#""*.m.example.com""#),
        ("two-wild", r#""*.*.example.com""#),
    ]);
    assert_eq!(id_of(&w, "r.m.example.com"), Some("one-wild"));
    assert_eq!(id_of(&w, "r.n.example.com"), Some("two-wild"));
    // 4. a `*suffix` label beats a plain `*` at equal counts.
    assert_eq!(id_of(&c, "us-x.c.example.com"), Some("glob"));
    assert_eq!(id_of(&c, "us-y.c.example.com"), Some("wild-c"));
    // a glob needs at least one character before its suffix.
    assert_eq!(id_of(&c, "-x.c.example.com"), Some("wild-c"));
    // 2 again: the subdomain rule covers deeper names the wildcard cannot.
    assert_eq!(id_of(&c, "q.example.com"), Some("sub"));
    // 5. fixed depth beats a subdomain rule at equal counts.
    let d = catalog(&[
        ("sub", r#"".e.example.com""#),
        ("wild", r#""*.e.example.com""#),
    ]);
    // ".e.example.com" has 3 literal and no wildcard: fewer wildcards wins first.
    assert_eq!(id_of(&d, "x.e.example.com"), Some("sub"));
    // 6. tie: the literal further right wins (*.f.example.com over g.*.example.com).
    let e = catalog(&[
        ("left", r#""g.*.example.com""#),
        ("right", r#""*.f.example.com""#),
    ]);
    assert_eq!(id_of(&e, "g.f.example.com"), Some("right"));
    let e2 = catalog(&[
        ("right", r#""*.f.example.com""#),
        ("left", r#""g.*.example.com""#),
    ]);
    assert_eq!(
        id_of(&e2, "g.f.example.com"),
        Some("right"),
        "order-independent"
    );
}

#[test]
fn fixed_depth_beats_subdomain_when_all_else_ties() {
    // Both rules: 3 literal labels, 1 wildcard ... the subdomain rule "x" below has one
    // wildcard too, so only rule 5 separates them.
    let c = catalog(&[
        ("sub", r#"".*.h.example.com""#),
        ("fixed", r#""*.h.example.com""#),
    ]);
    assert_eq!(id_of(&c, "a.h.example.com"), Some("fixed"));
    assert_eq!(id_of(&c, "b.a.h.example.com"), Some("sub"));
}

fn error(text: &str) -> CatalogError {
    match Catalog::from_toml(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn duplicate_rules_name_both_entries() {
    let t = format!(
        "{HEAD}{}{}",
        entry("one", r#""api.x.com""#),
        entry("two", r#""API.X.com.""#)
    );
    let e = error(&t);
    assert_eq!(
        e,
        CatalogError::DuplicateRule {
            rule: "api.x.com".into(),
            first: "one".into(),
            second: "two".into()
        }
    );
    assert!(
        e.to_string().contains("\"one\"") && e.to_string().contains("\"two\""),
        "{e}"
    );
    let same = format!("{HEAD}{}", entry("one", r#"".x.com", ".x.com""#));
    assert!(matches!(error(&same), CatalogError::DuplicateRule { .. }));
}

#[test]
fn bad_entries_are_named() {
    let bad_cat = format!(
        "{HEAD}{}",
        entry("one", r#""a.x.com""#).replace("\"api\"", "\"search\"")
    );
    let e = error(&bad_cat);
    assert!(
        matches!(&e, CatalogError::Entry { index: 1, id, problem: EntryProblem::BadCategory(c) }
            if id == "one" && c == "search"),
        "{e:?}"
    );
    assert!(e.to_string().contains("entry #1 (\"one\")"), "{e}");

    let empty_product = format!(
        "{HEAD}{}{}",
        entry("ok", r#""a.x.com""#),
        entry("two", r#""b.x.com""#).replace("P two", " ")
    );
    assert!(matches!(
        error(&empty_product),
        CatalogError::Entry {
            index: 2,
            problem: EntryProblem::EmptyField("product"),
            ..
        }
    ));

    let dup_id = format!(
        "{HEAD}{}{}",
        entry("one", r#""a.x.com""#),
        entry("one", r#""b.x.com""#)
    );
    assert!(matches!(
        error(&dup_id),
        CatalogError::DuplicateId {
            first: 1,
            second: 2,
            ..
        }
    ));

    let no_hosts = format!("{HEAD}{}", entry("one", ""));
    assert!(matches!(
        error(&no_hosts),
        CatalogError::Entry {
            problem: EntryProblem::NoHosts,
            ..
        }
    ));

    let ratio = format!(
        "{HEAD}{}",
        entry("one", r#""a.x.com""#).replace(
            "request_bytes_per_token = 4.0",
            "request_bytes_per_token = 0.0"
        )
    );
    assert!(matches!(
        error(&ratio),
        CatalogError::Entry {
            problem: EntryProblem::BadRatio { .. },
            ..
        }
    ));

    let price = format!(
        "{HEAD}{}price_input_per_mtok = 1.0\n",
        entry("one", r#""a.x.com""#)
    );
    assert!(matches!(
        error(&price),
        CatalogError::Entry {
            problem: EntryProblem::PriceWithoutModel,
            ..
        }
    ));

    let schema = format!(
        "schema = 2\nversion = \"t\"\n{}",
        entry("one", r#""a.x.com""#)
    );
    assert_eq!(
        error(&schema),
        CatalogError::UnsupportedSchema {
            found: 2,
            supported: 1
        }
    );

    let unknown = format!("{HEAD}{}colour = \"red\"\n", entry("one", r#""a.x.com""#));
    assert!(matches!(error(&unknown), CatalogError::Syntax(m) if m.contains("colour")));
}

#[test]
fn bad_rules_are_refused_with_the_reason() {
    for (rule, reason) in [
        ("*.com", RuleProblem::TooBroad),
        (".com", RuleProblem::TooBroad),
        ("x.*", RuleProblem::TooBroad),
        ("a..x.com", RuleProblem::EmptyLabel),
        ("a b.x.com", RuleProblem::BadCharacter),
        ("a*b.x.com", RuleProblem::BadCharacter),
        ("10.0.0.1", RuleProblem::IpAddress),
        ("", RuleProblem::Empty),
    ] {
        let t = format!("{HEAD}{}", entry("one", &format!("{rule:?}")));
        match error(&t) {
            CatalogError::Entry {
                problem:
                    EntryProblem::BadRule {
                        rule: r,
                        reason: got,
                    },
                ..
            } => {
                assert_eq!((r.as_str(), got), (rule, reason));
            }
            other => panic!("{rule:?}: {other:?}"),
        }
    }
}

const SHAPE_TABLE: &str = "request_header_bytes = [700, 600]\nresponse_header_bytes = [1000, 800]\n\
    plain_envelope_bytes = 800\nstream_framing_records = 4\nstream_framing_bytes = 1200\n\
    event_envelope_bytes = 320\ntokens_per_event = 1.0\nevents_from_records = 0.0\n";

fn shaped_entry(shape: &str) -> String {
    entry("one", r#""a.x.com""#).replace(
        "[[entry]]\n",
        &format!("[[entry]]\napi_shape = \"{shape}\"\n"),
    )
}

#[test]
fn every_measured_api_shape_has_its_profile_in_the_embedded_catalog() {
    let c = Catalog::embedded();
    for shape in [ApiShape::OpenAi, ApiShape::Anthropic, ApiShape::Gemini] {
        let entries: Vec<_> = c
            .entries()
            .iter()
            .filter(|e| e.api_shape == shape)
            .collect();
        assert!(!entries.is_empty(), "no {shape} entry");
        for e in entries {
            assert_ne!(
                e.profile,
                ShapeProfile::GUIDE,
                "{}: no [shape.{shape}]",
                e.id
            );
        }
    }
    let openai = c.lookup("api.openai.com").expect("in catalog").profile;
    let gemini = c
        .lookup("generativelanguage.googleapis.com")
        .expect("in catalog")
        .profile;
    // OpenAI streams a token per chunk, Gemini dozens.
    assert!(openai.tokens_per_event < 2.0 && gemini.tokens_per_event > 10.0);
}

#[test]
fn a_shape_table_reaches_the_entries_of_that_shape() {
    let t = format!(
        "{HEAD}[shape.openai]\n{SHAPE_TABLE}{}",
        shaped_entry("openai")
    );
    let c = Catalog::from_toml(&t).expect("valid");
    let p = c.get("one").expect("entry").profile;
    assert_eq!(
        (
            p.request_header_bytes,
            p.event_envelope_bytes,
            p.tokens_per_event
        ),
        ((700, 600), 320, 1.0)
    );
    // A shape without a table gets the guide values.
    let t = format!(
        "{HEAD}[shape.openai]\n{SHAPE_TABLE}{}",
        shaped_entry("gemini")
    );
    let c = Catalog::from_toml(&t).expect("valid");
    assert_eq!(c.get("one").expect("entry").profile, ShapeProfile::GUIDE);
}

#[test]
fn bad_shape_tables_are_refused_naming_the_shape_and_field() {
    let unknown = format!(
        "{HEAD}[shape.klingon]\n{SHAPE_TABLE}{}",
        shaped_entry("openai")
    );
    assert_eq!(
        error(&unknown),
        CatalogError::Shape {
            shape: "klingon".into(),
            problem: ShapeProblem::UnknownShape
        }
    );
    let blend = format!(
        "{HEAD}[shape.gemini]\n{}{}",
        SHAPE_TABLE.replace("events_from_records = 0.0", "events_from_records = 1.5"),
        shaped_entry("gemini")
    );
    match error(&blend) {
        CatalogError::Shape {
            shape,
            problem: ShapeProblem::OutOfRange { field, value, .. },
        } => assert_eq!(
            (shape.as_str(), field, value),
            ("gemini", "events_from_records", 1.5)
        ),
        other => panic!("{other:?}"),
    }
    let envelope = format!(
        "{HEAD}[shape.openai]\n{}{}",
        SHAPE_TABLE.replace(
            "event_envelope_bytes = 320",
            "event_envelope_bytes = 999999"
        ),
        shaped_entry("openai")
    );
    assert!(matches!(
        error(&envelope),
        CatalogError::Shape {
            problem: ShapeProblem::OutOfRange {
                field: "event_envelope_bytes",
                ..
            },
            ..
        }
    ));
    let missing = format!(
        "{HEAD}[shape.openai]\n{}{}",
        SHAPE_TABLE.replace("tokens_per_event = 1.0\n", ""),
        shaped_entry("openai")
    );
    assert!(matches!(error(&missing), CatalogError::Syntax(m) if m.contains("tokens_per_event")));
}
