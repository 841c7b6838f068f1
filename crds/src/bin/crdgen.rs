//! `crdgen`: writes the Medium and MediumJob CRDs into the chart (or to stdout with `-`).

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| ntt_crds::CHART_CRDS.to_owned());
    let yaml = match ntt_crds::crds_yaml() {
        Ok(yaml) => yaml,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "crdgen: {error}");
            return ExitCode::FAILURE;
        }
    };
    let written = if target == "-" {
        std::io::stdout().write_all(yaml.as_bytes())
    } else {
        write(&target, &yaml)
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "crdgen: cannot write {target}: {error}");
            ExitCode::FAILURE
        }
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "the one file this binary writes; its error message names the path"
)]
fn write(path: &str, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
