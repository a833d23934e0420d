//! Word count: counts the words of the text files given as arguments (a
//! built-in text when there are none) and, when the input ends, prints every
//! word once as `word<TAB>count`.
//!
//! Words are maximal runs of alphanumeric characters, lowercased. With
//! `--output DIR` the counts go, exactly once, into part files in DIR instead
//! of standard output. Engine flags such as `--parallelism N` or
//! `--checkpoint-dir DIR --checkpoint-interval-ms N` may appear anywhere
//! among the arguments:
//!
//! ```text
//! cargo run --example wordcount -- README.md --parallelism 2
//! ```

use weir::prelude::*;

/// Counted when no file is given.
const BUILT_IN_TEXT: &str = "\
To be, or not to be, that is the question:
Whether 'tis nobler in the mind to suffer
The slings and arrows of outrageous fortune,
Or to take arms against a sea of troubles
And by opposing end them. To die: to sleep;
No more; and by a sleep to say we end
The heart-ache and the thousand natural shocks
That flesh is heir to, 'tis a consummation
Devoutly to be wish'd. To die, to sleep;";

fn main() -> weir::Result<()> {
    let env = StreamEnv::from_args();
    // The input is bounded: emit each word's final count once, at the end.
    env.set_runtime_mode(RuntimeMode::Batch);
    let (files, output) = split_output_flag(env.args());
    let lines = if files.is_empty() {
        env.from_collection(BUILT_IN_TEXT.lines().map(str::to_owned))
    } else {
        env.source(FileSource::lines_of(files))
    };
    let counts = lines
        .flat_map(|line: String| words(&line))
        .name("Split words")
        .map(|word| (word, 1u64))
        .key_by(|(word, _): &(String, u64)| word.clone())
        .sum(|(_, count): &mut (String, u64)| count)
        .map(|(word, count)| format!("{word}\t{count}"));
    match output {
        Some(dir) => counts.sink_to_files(dir).uid("output"),
        None => counts.print(),
    };
    env.execute("wordcount")?;
    Ok(())
}

/// The arguments without `--output DIR`, and DIR.
fn split_output_flag(args: Vec<String>) -> (Vec<String>, Option<String>) {
    let mut files = Vec::new();
    let mut output = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--output") {
            Some("") => output = args.next(),
            Some(value) if value.starts_with('=') => output = Some(value[1..].to_owned()),
            _ => files.push(arg),
        }
    }
    (files, output)
}

/// The words of a line: maximal runs of alphanumeric characters, lowercased.
fn words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric()).filter(|word| !word.is_empty()).map(str::to_lowercase).collect()
}
