//! The engine's command-line flags, picked out of a job's arguments.
//!
//! A job binary receives both engine flags (`--parallelism 4`) and its own
//! arguments (input files, options). The engine takes the flags it knows,
//! wherever they appear, and leaves everything else, in order, to the job.
//! After a literal `--`, everything belongs to the job.

use std::path::PathBuf;
use std::time::Duration;

/// Engine settings given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineArgs {
    /// `--parallelism N`: default parallelism of every operator.
    pub parallelism: Option<usize>,
    /// `--max-parallelism N`: number of key groups.
    pub max_parallelism: Option<usize>,
    /// `--checkpoint-dir DIR`: where checkpoints go.
    pub checkpoint_dir: Option<PathBuf>,
    /// `--checkpoint-interval-ms N`: turns checkpointing on.
    pub checkpoint_interval: Option<Duration>,
    /// `--state-backend memory|rocksdb`.
    pub state_backend: Option<BackendChoice>,
    /// `--from-checkpoint PATH`: a `chk-<n>` or savepoint directory to start from.
    pub from_checkpoint: Option<PathBuf>,
    /// Everything that is not an engine flag, in order.
    pub job_args: Vec<String>,
}

/// A malformed engine flag.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgsError {
    /// The flag needs a value and none followed.
    #[error("{flag} needs a value, e.g. {flag} 4")]
    MissingValue {
        /// The flag.
        flag: &'static str,
    },
    /// The value is not a positive integer.
    #[error("{flag} expects a positive integer, got '{value}'")]
    NotPositive {
        /// The flag.
        flag: &'static str,
        /// What was given.
        value: String,
    },
    /// The value is not one of the choices.
    #[error("{flag} expects one of {choices}, got '{value}'")]
    NotAChoice {
        /// The flag.
        flag: &'static str,
        /// The allowed values.
        choices: &'static str,
        /// What was given.
        value: String,
    },
}

/// Where keyed state lives, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    /// `memory`.
    Memory,
    /// `rocksdb`.
    RocksDb,
}

const FLAGS: [&str; 6] = [
    "--parallelism",
    "--max-parallelism",
    "--checkpoint-dir",
    "--checkpoint-interval-ms",
    "--state-backend",
    "--from-checkpoint",
];

impl EngineArgs {
    /// Separates engine flags from job arguments (`args` excludes the program name).
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, ArgsError> {
        let mut parsed = Self::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            if arg == "--" {
                parsed.job_args.extend(args.by_ref());
                break;
            }
            let (name, inline_value) = match arg.split_once('=') {
                Some((name, value)) => (name, Some(value.to_owned())),
                None => (arg.as_str(), None),
            };
            let Some(&flag) = FLAGS.iter().find(|flag| **flag == name) else {
                parsed.job_args.push(arg);
                continue;
            };
            let value = inline_value.or_else(|| args.next()).ok_or(ArgsError::MissingValue { flag })?;
            match flag {
                "--parallelism" => parsed.parallelism = Some(positive(flag, &value)?),
                "--max-parallelism" => parsed.max_parallelism = Some(positive(flag, &value)?),
                "--checkpoint-dir" => parsed.checkpoint_dir = Some(PathBuf::from(value)),
                "--checkpoint-interval-ms" => {
                    parsed.checkpoint_interval = Some(Duration::from_millis(positive(flag, &value)? as u64));
                }
                "--state-backend" => {
                    parsed.state_backend = Some(match value.as_str() {
                        "memory" => BackendChoice::Memory,
                        "rocksdb" => BackendChoice::RocksDb,
                        _ => return Err(ArgsError::NotAChoice { flag, choices: "memory, rocksdb", value }),
                    });
                }
                _ => parsed.from_checkpoint = Some(PathBuf::from(value)),
            }
        }
        Ok(parsed)
    }
}

fn positive(flag: &'static str, value: &str) -> Result<usize, ArgsError> {
    match value.parse::<usize>() {
        Ok(number) if number > 0 => Ok(number),
        _ => Err(ArgsError::NotPositive { flag, value: value.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<EngineArgs, ArgsError> {
        EngineArgs::parse(args.iter().map(|arg| arg.to_string()))
    }

    #[test]
    fn engine_flags_are_taken_wherever_they_are() {
        let parsed = parse(&["in.txt", "--parallelism", "4", "--verbose", "--max-parallelism=256"]).expect("valid");
        assert_eq!(parsed.parallelism, Some(4));
        assert_eq!(parsed.max_parallelism, Some(256));
        assert_eq!(parsed.job_args, vec!["in.txt", "--verbose"]);
    }

    #[test]
    fn checkpoint_and_state_flags() {
        let parsed = parse(&[
            "--checkpoint-dir",
            "/tmp/chk",
            "in.csv",
            "--checkpoint-interval-ms=250",
            "--state-backend",
            "rocksdb",
            "--from-checkpoint",
            "/tmp/chk/job/chk-3",
        ])
        .expect("valid");
        assert_eq!(parsed.checkpoint_dir, Some(PathBuf::from("/tmp/chk")));
        assert_eq!(parsed.checkpoint_interval, Some(Duration::from_millis(250)));
        assert_eq!(parsed.state_backend, Some(BackendChoice::RocksDb));
        assert_eq!(parsed.from_checkpoint, Some(PathBuf::from("/tmp/chk/job/chk-3")));
        assert_eq!(parsed.job_args, vec!["in.csv"]);
        let error = parse(&["--state-backend", "heap"]).expect_err("not a backend");
        assert_eq!(error.to_string(), "--state-backend expects one of memory, rocksdb, got 'heap'");
    }

    #[test]
    fn everything_after_double_dash_is_the_jobs() {
        let parsed = parse(&["--", "--parallelism", "2"]).expect("valid");
        assert_eq!(parsed.parallelism, None);
        assert_eq!(parsed.job_args, vec!["--parallelism", "2"]);
    }

    #[test]
    fn malformed_values_are_named() {
        assert_eq!(parse(&["--parallelism"]), Err(ArgsError::MissingValue { flag: "--parallelism" }));
        let error = parse(&["--parallelism", "zero"]).expect_err("not a number");
        assert_eq!(error.to_string(), "--parallelism expects a positive integer, got 'zero'");
        assert!(parse(&["--parallelism=0"]).is_err());
    }
}
