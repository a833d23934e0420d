//! The engine's command-line flags, picked out of a job's arguments.
//!
//! A job binary receives both engine flags (`--parallelism 4`) and its own
//! arguments (input files, options). The engine takes the flags it knows,
//! wherever they appear, and leaves everything else, in order, to the job.
//! After a literal `--`, everything belongs to the job.

/// Engine settings given on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineArgs {
    /// `--parallelism N`: default parallelism of every operator.
    pub parallelism: Option<usize>,
    /// `--max-parallelism N`: number of key groups.
    pub max_parallelism: Option<usize>,
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
}

const FLAGS: [&str; 2] = ["--parallelism", "--max-parallelism"];

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
            let number = positive(flag, &value)?;
            match flag {
                "--parallelism" => parsed.parallelism = Some(number),
                _ => parsed.max_parallelism = Some(number),
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
