//! Tests of the workload: its schema, checks, resolution, readers and wire spec.

use std::collections::BTreeSet;
use std::path::Path;

use super::readers::user;
use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

fn plan(text: &str) -> WorkloadPlan {
    toml::from_str(text).unwrap()
}

#[test]
fn lengths_read_in_every_form() {
    let p = plan(
        "input_tokens = { uniform = [1000, 4096] }\noutput_tokens = { normal = { mean = 200, stddev = 50, max = 300 } }",
    );
    assert_eq!(p.input_tokens, LengthPlan::Uniform(1000, 4096));
    assert!(matches!(
        p.output_tokens,
        LengthPlan::Normal { max: Some(300), .. }
    ));
    assert_eq!(
        plan("input_tokens = [1, 2, 3]").input_tokens,
        LengthPlan::List(vec![1, 2, 3])
    );
    assert_eq!(
        plan("input_tokens = { list = [7] }").input_tokens,
        LengthPlan::List(vec![7])
    );
    assert_eq!(plan("input_tokens = 5").input_tokens.fixed(), Some(5));
    for bad in [
        "input_tokens = 0",
        "input_tokens = { uniform = [10, 5] }",
        "input_tokens = { normal = { mean = 10 } }",
        "input_tokens = { poisson = 3 }",
        "input_tokens = []",
        "input_tokens = \"many\"",
    ] {
        assert!(toml::from_str::<WorkloadPlan>(bad).is_err(), "{bad}");
    }
}

#[test]
fn lengths_write_back_as_they_read() {
    let p = plan(
        "input_tokens = { normal = { mean = 2048.0, stddev = 256.0, min = 1000 } }\noutput_tokens = { uniform = [1, 9] }\n[[class]]\nname = \"a\"\nweight = 1\ninput_tokens = [3, 4]",
    );
    let text = toml::to_string(&p).unwrap();
    let again: WorkloadPlan = toml::from_str(&text).unwrap();
    assert_eq!(again.input_tokens, p.input_tokens);
    assert_eq!(again.output_tokens, p.output_tokens);
    assert_eq!(
        again.classes[0].get_ref().input_tokens,
        Some(LengthPlan::List(vec![3, 4]))
    );
}

#[test]
fn distributions_stay_in_their_bounds() {
    let mut rng = StdRng::seed_from_u64(1);
    let normal = LengthDist::Normal {
        mean: 100.0,
        stddev: 80.0,
        min: 50,
        max: 120,
    };
    let uniform = LengthDist::Uniform {
        min: 1000,
        max: 4096,
    };
    let mut seen = BTreeSet::new();
    for _ in 0..2000 {
        let n = normal.sample(&mut rng);
        assert!((50..=120).contains(&n));
        let u = uniform.sample(&mut rng);
        assert!((1000..=4096).contains(&u));
        seen.insert(LengthDist::Choices(vec![3, 9]).sample(&mut rng));
    }
    assert_eq!(seen, BTreeSet::from([3, 9]));
    assert_eq!(
        (uniform.min(), uniform.max(), uniform.mean()),
        (1000, 4096, 2548.0)
    );
}

#[test]
fn classes_inherit_what_they_do_not_set() {
    let p = plan(
        "output_tokens = 64\nunique = false\n[[class]]\nname = \"chat\"\nweight = 70\ninput_tokens = 100\n[[class]]\nname = \"sum\"\nweight = 30\ninput_tokens = 3000\noutput_tokens = 300\n",
    );
    let spec = p.resolve(Path::new(".")).unwrap();
    assert_eq!(spec.class_names(), vec!["chat", "sum"]);
    assert!((spec.classes[0].weight - 0.7).abs() < 1e-9);
    assert_eq!(spec.classes[0].output_tokens, LengthDist::Fixed(64));
    assert_eq!(spec.classes[1].output_tokens, LengthDist::Fixed(300));
    assert!(!spec.classes[1].unique);
    assert_eq!(p.fixed_input_tokens(), None);
    assert_eq!(plan("input_tokens = 9").fixed_input_tokens(), Some(9));
}

#[test]
fn problems_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = plan(
        "tokenizer = \"nope.json\"\ntemplate = \"missing.j2\"\ndataset = { file = \"d.jsonl\" }\nextra_body = { max_tokens = 3 }\n[[class]]\nname = \"a\"\nweight = 0\n[[class]]\nname = \"a\"\nweight = 1\ntemplate_text = \"{{ fill() }}\"\nshared_prefix = { count = 2, tokens = 2000, fraction = 0.5 }\n",
    );
    let fields: Vec<String> = p
        .problems(dir.path())
        .into_iter()
        .map(|p| p.field)
        .collect();
    for want in [
        "workload.tokenizer",
        "workload.class[0].weight",
        "workload.class[1].name",
        "workload.class[0].template",
        "workload.class[0].extra_body",
        "workload.class[1].shared_prefix.tokens",
    ] {
        assert!(fields.iter().any(|f| f == want), "{want} not in {fields:?}");
    }
}

#[test]
fn length_files_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("l.txt"), "# lengths\n100\n\n200\n").unwrap();
    std::fs::write(dir.path().join("l.csv"), "id,len\n1,30\n2,40\n").unwrap();
    std::fs::write(dir.path().join("bad.txt"), "100\nlots\n").unwrap();
    let f = "workload.input_tokens";
    assert_eq!(
        read_lengths(&dir.path().join("l.txt"), None, f).unwrap(),
        vec![100, 200]
    );
    assert_eq!(
        read_lengths(&dir.path().join("l.csv"), Some("len"), f).unwrap(),
        vec![30, 40]
    );
    let e = read_lengths(&dir.path().join("bad.txt"), None, f).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(
        e.to_string().contains("bad.txt:2: workload.input_tokens"),
        "{e}"
    );
    let e = read_lengths(&dir.path().join("l.csv"), Some("nope"), f).unwrap_err();
    assert!(e.message.contains("no column"), "{e}");
}

fn dataset(
    dir: &Path,
    name: &str,
    body: &str,
    extra: &str,
) -> Result<Vec<DatasetRow>, WorkloadError> {
    std::fs::write(dir.join(name), body).unwrap();
    let d: DatasetPlan = toml::from_str(&format!("file = \"{name}\"\n{extra}")).unwrap();
    read_dataset(dir, &d, "workload.dataset")
}

#[test]
fn every_dataset_format_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rows = dataset(
        d,
        "p.jsonl",
        "{\"prompt\":\"hello there\"}\n\n{\"text\":\"second\"}\n",
        "",
    )
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(
        (rows[1].line, rows[1].messages[0].content.as_str()),
        (3, "second")
    );
    let rows = dataset(
        d,
        "c.jsonl",
        "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"hello\"}]}\n",
        "",
    )
    .unwrap();
    assert_eq!(rows[0].messages.len(), 2, "trailing answers are dropped");
    let rows = dataset(
        d,
        "s.json",
        r#"[{"id":"a","conversations":[{"from":"human","value":"q1"},{"from":"gpt","value":"a1"},{"from":"human","value":"q2"}]}]"#,
        "",
    )
    .unwrap();
    assert_eq!(rows[0].messages, vec![user("q1")]);
    let rows = dataset(d, "t.txt", "one\n\ntwo\nthree\n", "limit = 2").unwrap();
    let p: WorkloadPlan = toml::from_str("dataset = \"t.txt\"").unwrap();
    assert_eq!(p.dataset.unwrap().file, Path::new("t.txt"));
    assert!(
        toml::from_str::<WorkloadPlan>("dataset = { file = \"t.txt\", fits = \"trim\" }").is_err()
    );
    assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 3]);
    let rows = dataset(d, "q.jsonl", "{\"q\":\"x\"}\n", "field = \"q\"").unwrap();
    assert_eq!(rows[0].messages[0].content, "x");
}

#[test]
fn malformed_dataset_rows_name_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = dataset(d, "a.jsonl", "{\"prompt\":\"ok\"}\n{\"prompt\":\n", "").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = dataset(
        d,
        "b.jsonl",
        "{\"prompt\":\"ok\"}\n{\"answer\":\"x\"}\n",
        "",
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.to_string().contains("prompt or text"), "{e}");
    let e = dataset(d, "c.jsonl", "{\"messages\":[{\"role\":\"user\"}]}\n", "").unwrap_err();
    assert!(e.to_string().contains("messages[0].content"), "{e}");
    let e = dataset(
        d,
        "s.json",
        r#"[{"conversations":[{"from":"human","value":"q"}]},{"conversations":[{"from":"alien","value":"q"}]}]"#,
        "",
    )
    .unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.to_string().contains("conversations[0].from"), "{e}");
    let e = dataset(d, "s2.json", "[{\"conversations\": [", "").unwrap_err();
    assert!(e.message.contains("not a JSON array"), "{e}");
    let e = dataset(d, "empty.txt", "\n\n", "").unwrap_err();
    assert!(e.message.contains("no prompt"), "{e}");
}

#[test]
fn variable_rows_from_csv_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("v.csv");
    std::fs::write(&csv, "topic,n\nrust,3\n\"go, mostly\",4\n").unwrap();
    let rows = read_var_rows(&csv, "workload.vars_file").unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1].values["topic"], "go, mostly");
    assert_eq!(rows[1].line, 3);
    let jl = dir.path().join("v.jsonl");
    std::fs::write(&jl, "{\"topic\":\"a\"}\n[1]\n").unwrap();
    let e = read_var_rows(&jl, "workload.vars_file").unwrap_err();
    assert_eq!(e.line, Some(2));
}
