//! Embeds the commit the binary was built from (`leasehold --version`): `LEASEHOLD_COMMIT` from the
//! environment (a packager's choice), else `git rev-parse --short HEAD` with `-dirty` for local
//! changes, else "unknown" (a source tarball without git).

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-env-changed=LEASEHOLD_COMMIT");
    let commit = std::env::var("LEASEHOLD_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let head = git(&["rev-parse", "--short=12", "HEAD"])?;
        // Rebuild when HEAD moves (the git dir of a worktree is elsewhere: ask git where).
        if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
            println!("cargo:rerun-if-changed={dir}/HEAD");
            if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
                if let Some(common) = git(&["rev-parse", "--git-common-dir"]) {
                    println!("cargo:rerun-if-changed={common}/{reference}");
                }
            }
        }
        let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
        Some(if dirty { format!("{head}-dirty") } else { head })
    });
    println!("cargo:rustc-env=LEASEHOLD_COMMIT={}", commit.unwrap_or_else(|| "unknown".into()));
}
