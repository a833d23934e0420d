//! End-to-end: the `wordcount` example as a real process, on a multi-megabyte
//! text, at parallelism 1, 2 and 4, against a count made independently here;
//! and its plan as `weir plan` prints it.

use std::collections::HashMap;
use std::process::{Command, Output};

use anyhow::{Context, Result, bail};

mod common;

fn run_wordcount(args: &[&str]) -> Result<Output> {
    Ok(Command::new(common::example_binary("wordcount")?).args(args).output()?)
}

/// A deterministic pseudo-random text: mixed case, punctuation, digits,
/// non-ASCII letters, blank lines and CRLF line ends.
fn generate_text(target_bytes: usize) -> String {
    const VOCABULARY: [&str; 12] =
        ["Weir", "stream", "FLINK", "state", "Barrier", "x1", "42", "naïve", "Über", "key-group", "don't", "a"];
    const SEPARATORS: [&str; 6] = [" ", ", ", " -- ", "; ", "\t", "...  "];
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::with_capacity(target_bytes + 100);
    while text.len() < target_bytes {
        let words_on_line = next() % 14;
        for index in 0..words_on_line {
            if index > 0 {
                text.push_str(SEPARATORS[(next() % 6) as usize]);
            }
            text.push_str(VOCABULARY[(next() % 12) as usize]);
            if next() % 5 == 0 {
                text.push_str(&(next() % 1000).to_string());
            }
        }
        text.push_str(if next() % 10 == 0 { "\r\n" } else { "\n" });
    }
    text
}

/// Counts words with a character loop, independent of the example's split.
fn expected_counts(text: &str) -> HashMap<String, u64> {
    let mut counts = HashMap::new();
    let mut word = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_alphanumeric() {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            *counts.entry(std::mem::take(&mut word)).or_insert(0) += 1;
        }
    }
    counts
}

fn parse_output(stdout: &[u8]) -> Result<HashMap<String, u64>> {
    let mut counts = HashMap::new();
    for line in std::str::from_utf8(stdout)?.lines() {
        let (word, count) = line.split_once('\t').with_context(|| format!("no tab in line {line:?}"))?;
        let previous = counts.insert(word.to_owned(), count.parse::<u64>()?);
        if previous.is_some() {
            bail!("word {word:?} printed twice");
        }
    }
    Ok(counts)
}

#[test]
fn multi_megabyte_text_counts_equal_at_parallelism_1_2_4() -> Result<()> {
    let text = generate_text(6 << 20);
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("input.txt");
    std::fs::write(&input, &text)?;
    let expected = expected_counts(&text);
    assert!(expected.len() > 1000, "the text should have many distinct words");
    for parallelism in ["1", "2", "4"] {
        let output = run_wordcount(&[input.to_str().context("utf-8 path")?, "--parallelism", parallelism])?;
        assert!(output.status.success(), "parallelism {parallelism}: {}", String::from_utf8_lossy(&output.stderr));
        let counts = parse_output(&output.stdout)?;
        assert_eq!(counts.len(), expected.len(), "distinct words at parallelism {parallelism}");
        assert!(counts == expected, "counts differ from the expectation at parallelism {parallelism}");
    }
    Ok(())
}

#[test]
fn a_directory_of_files_counts_like_their_concatenation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let parts = [generate_text(300_000), generate_text(10), String::new(), "Tail words, tail!\n".to_owned()];
    for (index, part) in parts.iter().enumerate() {
        std::fs::write(dir.path().join(format!("part-{index}.txt")), part)?;
    }
    // Hidden files are not input.
    std::fs::write(dir.path().join(".hidden"), "ignored words")?;
    let output = run_wordcount(&[dir.path().to_str().context("utf-8 path")?, "--parallelism", "3"])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(parse_output(&output.stdout)?, expected_counts(&parts.concat()));
    Ok(())
}

#[test]
fn built_in_text_when_no_file_is_given() -> Result<()> {
    let output = run_wordcount(&["--parallelism", "2"])?;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let counts = parse_output(&output.stdout)?;
    // "To be, or not to be": the built-in text is Hamlet's soliloquy.
    assert_eq!(counts.get("be"), Some(&3));
    assert_eq!(counts.get("sleep"), Some(&3));
    Ok(())
}

#[test]
fn a_missing_input_file_is_named_and_fails_without_panic() -> Result<()> {
    let output = run_wordcount(&["/definitely/not/here.txt"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("'/definitely/not/here.txt'"), "the error names the path: {stderr}");
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    Ok(())
}

#[test]
fn a_malformed_engine_flag_is_a_usage_error() -> Result<()> {
    let output = run_wordcount(&["--parallelism", "many"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--parallelism expects a positive integer, got 'many'"), "{stderr}");
    Ok(())
}

/// `weir plan BINARY ARGS`: its standard output.
fn weir_plan(args: &[&str]) -> Result<String> {
    let output = Command::new(env!("CARGO_BIN_EXE_weir")).arg("plan").args(args).output()?;
    if !output.status.success() {
        bail!("weir plan {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}

#[test]
fn weir_plan_prints_the_chained_operators_and_the_partitioned_edges() -> Result<()> {
    let binary = common::example_binary("wordcount")?;
    let binary = binary.to_str().context("utf-8 path")?;
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "a few words\n")?;
    let input = input.to_str().context("utf-8 path")?;

    let text = weir_plan(&[binary, "--parallelism", "3", "--", input])?;
    let expected = format!(
        "job wordcount, max parallelism 128\n\
         vertex v0, parallelism 3\n\
         \x20   source     Source: File {input}\n\
         \x20   transform  Split words\n\
         \x20   transform  Map\n\
         vertex v1, parallelism 3\n\
         \x20   keyed      Sum\n\
         \x20   transform  Map\n\
         \x20   sink       Sink: Print\n\
         edge v0 -> v1, HASH\n"
    );
    assert_eq!(text, expected);

    let dot = weir_plan(&[binary, "--dot", "--", input, "--parallelism", "2"])?;
    assert!(dot.starts_with("digraph {\n") && dot.ends_with("}\n"), "{dot}");
    let source = format!(r#"0 [ label = "v0, parallelism 2\lSource: File {input}\lSplit words\lMap\l" shape = box ]"#);
    assert!(dot.contains(&source), "{dot}");
    assert!(dot.contains(r#"1 [ label = "v1, parallelism 2\lSum\lMap\lSink: Print\l" shape = box ]"#), "{dot}");
    assert!(dot.contains(r#"0 -> 1 [ label = "HASH" ]"#), "{dot}");
    Ok(())
}

#[test]
fn logs_written_to_a_file_or_pipe_carry_no_colour_codes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("words.txt");
    std::fs::write(&input, "to be or not to be\n")?;
    let output = Command::new(common::example_binary("wordcount")?)
        .arg(input.to_str().context("utf-8 path")?)
        .env("RUST_LOG", "info")
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.contains("INFO"), "logs at info: {stderr}");
    assert!(!stderr.contains('\x1b'), "no ANSI escapes in piped logs: {stderr:?}");
    Ok(())
}
