//! The command line's grammar: every command with its arguments and help.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command, value_parser};

/// Where the client commands look for the coordinator unless told.
const DEFAULT_COORDINATOR: &str = "http://127.0.0.1:6123";

/// The `weir` command and its subcommands.
pub fn command() -> Command {
    Command::new("weir")
        .about("Weir: run a coordinator or a worker, submit and manage jobs")
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(coordinator())
        .subcommand(worker())
        .subcommand(submit())
        .subcommand(run())
        .subcommand(plan())
        .subcommand(Command::new("list").about("List the jobs").arg(coordinator_flag()))
        .subcommand(
            Command::new("status").about("Show a job").arg(Arg::new("job").required(true)).arg(coordinator_flag()),
        )
        .subcommand(
            Command::new("cancel").about("Cancel a job").arg(Arg::new("job").required(true)).arg(coordinator_flag()),
        )
        .subcommand(savepoint())
}

fn coordinator_flag() -> Arg {
    Arg::new("coordinator")
        .long("coordinator")
        .value_name("URL")
        .default_value(DEFAULT_COORDINATOR)
        .help("the coordinator's URL")
}

fn binary_arg() -> Arg {
    Arg::new("binary").value_name("JOB_BINARY").required(true).value_parser(value_parser!(PathBuf))
}

fn parallelism_flag() -> Arg {
    Arg::new("parallelism").long("parallelism").value_name("N").value_parser(value_parser!(u32).range(1..))
}

/// The job's own arguments, after `--`.
fn job_args() -> Arg {
    Arg::new("args").value_name("JOB_ARGS").num_args(0..).last(true)
}

fn data_dir_flag(default: &'static str) -> Arg {
    Arg::new("data-dir").long("data-dir").value_name("DIR").default_value(default).value_parser(value_parser!(PathBuf))
}

fn bind_flag(default: &'static str) -> Arg {
    Arg::new("bind").long("bind").value_name("ADDR").default_value(default).value_parser(value_parser!(SocketAddr))
}

fn open_cluster_flag() -> Arg {
    Arg::new("open-cluster").long("open-cluster").action(clap::ArgAction::SetTrue).help(
        "listen on a non-loopback address although the cluster has no authentication or TLS: \
         anyone who reaches it can run programs on its workers",
    )
}

fn coordinator() -> Command {
    Command::new("coordinator")
        .about("Run the coordinator")
        .arg(bind_flag("127.0.0.1:6123"))
        .arg(open_cluster_flag())
        .arg(data_dir_flag("weir-data/coordinator"))
        .arg(
            Arg::new("heartbeat-interval-ms")
                .long("heartbeat-interval-ms")
                .value_name("MS")
                .default_value("500")
                .value_parser(value_parser!(u64).range(10..))
                .help("how often workers heartbeat"),
        )
        .arg(
            Arg::new("heartbeat-timeout-ms")
                .long("heartbeat-timeout-ms")
                .value_name("MS")
                .default_value("3000")
                .value_parser(value_parser!(u64).range(2500..))
                .help(
                    "a worker silent this long is lost and its jobs move; longer than the 2 s lease of \
                     job processes, so a frozen worker's processes have stopped first",
                ),
        )
}

fn worker() -> Command {
    Command::new("worker")
        .about("Run a worker that offers slots to the coordinator")
        .arg(coordinator_flag())
        .arg(
            Arg::new("slots")
                .long("slots")
                .value_name("N")
                .default_value("2")
                .value_parser(value_parser!(u32).range(1..)),
        )
        .arg(data_dir_flag("weir-data/worker"))
        .arg(bind_flag("127.0.0.1:0"))
        .arg(open_cluster_flag())
}

fn submit() -> Command {
    Command::new("submit")
        .about("Submit a compiled job binary")
        .arg(binary_arg())
        .arg(coordinator_flag())
        .arg(parallelism_flag())
        .arg(Arg::new("from-savepoint").long("from-savepoint").value_name("PATH"))
        .arg(Arg::new("detached").long("detached").action(ArgAction::SetTrue).help("print the job id and return"))
        .arg(job_args())
}

fn run() -> Command {
    Command::new("run")
        .about(
            "Run a job binary on an embedded local cluster: a coordinator and a worker in this process, \
             the job as in any cluster; prints the job's output at its end",
        )
        .arg(binary_arg().required(false).required_unless_present("example"))
        .arg(
            Arg::new("example")
                .long("example")
                .value_name("NAME")
                .conflicts_with("binary")
                .help("an example built by `cargo build --example NAME`"),
        )
        .arg(parallelism_flag())
        .arg(job_args())
}

fn plan() -> Command {
    Command::new("plan")
        .about(
            "Print the job graph a job binary plans, without running it: its vertices (chained operators, \
             parallelism) and the partitioning of its edges",
        )
        .arg(binary_arg())
        .arg(parallelism_flag())
        .arg(Arg::new("dot").long("dot").action(ArgAction::SetTrue).help("print Graphviz DOT instead of text"))
        .arg(job_args())
}

fn savepoint() -> Command {
    Command::new("savepoint")
        .about("Take a savepoint of a running job and print its directory")
        .arg(Arg::new("job").required(true))
        .arg(
            Arg::new("stop")
                .long("stop")
                .action(ArgAction::SetTrue)
                .help("End the job once the savepoint completed (its sinks commit what it covers)"),
        )
        .arg(coordinator_flag())
}
