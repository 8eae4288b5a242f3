//! The Debian package (issue 12, "Packaging"): `scripts/package.sh` builds it with cargo-deb from the
//! binary the tests run; it is installed with dpkg into an empty root (its own dpkg database), and
//! what was installed is run and checked:
//!
//! 1. the package is `leasehold`, depends on the libc it links, and holds the binary, the systemd unit,
//!    the example config (a conffile) and the docs;
//! 2. `leasehold --version` names the version and the commit; `leasehold check-config` accepts the
//!    installed /etc/leasehold/leasehold.toml;
//! 3. `systemd-analyze verify` accepts the installed unit, and `systemd-analyze security`
//!    rates its sandbox (printed; asserted below the "MEDIUM" exposure of 5.0).

mod netns_support;

use std::process::Command;

use netns_support::*;

fn run(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{what} failed ({}):\n{text}", out.status);
    text
}

#[test]
fn the_deb_installs_into_an_empty_root_and_what_it_installs_runs() {
    require_root();
    let dir = scratch_dir("package");
    let deb = dir.path().join("leasehold.deb");
    let bin = leasehold_bin();
    let script = workspace_root().join("scripts/package.sh");
    run("scripts/package.sh", Command::new(&script).arg("--binary").arg(&bin).arg("--output").arg(&deb));

    // 1. What the package says and holds.
    let fields = run("dpkg-deb -f", Command::new("dpkg-deb").arg("-f").arg(&deb));
    println!("{fields}");
    assert!(fields.contains("Package: leasehold"), "{fields}");
    assert!(fields.contains("Depends:") && fields.contains("libc6"), "depends on its libc: {fields}");
    let files = run("dpkg-deb -c", Command::new("dpkg-deb").arg("-c").arg(&deb));
    for path in [
        "./usr/bin/leasehold",
        "./lib/systemd/system/leasehold.service",
        "./etc/leasehold/leasehold.toml",
        "./usr/share/doc/leasehold/README.md",
    ] {
        assert!(files.contains(path), "the package holds {path}:\n{files}");
    }
    let control = dir.path().join("control");
    run("dpkg-deb -e", Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap_or_default();
    assert!(conffiles.contains("/etc/leasehold/leasehold.toml"), "the config is a conffile: {conffiles}");

    // Installed by dpkg into a root of its own (an empty dpkg database; libc6 is the host's).
    let root = dir.path().join("root");
    for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(sub)).expect("create the dpkg database");
    }
    for file in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        std::fs::write(root.join(file), "").expect("create the dpkg database");
    }
    let installed = run(
        "dpkg -i",
        Command::new("dpkg").arg("--root").arg(&root).args(["--force-depends", "--force-not-root", "-i"]).arg(&deb),
    );
    println!("{installed}");
    let status = run("dpkg -s", Command::new("dpkg").arg("--root").arg(&root).args(["-s", "leasehold"]));
    assert!(status.contains("Status: install ok installed"), "{status}");

    // 2. The installed binary and config.
    let installed_bin = root.join("usr/bin/leasehold");
    let version = run("leasehold --version", Command::new(&installed_bin).arg("--version"));
    println!("{version}");
    assert!(version.starts_with(&format!("leasehold {} (commit ", env!("CARGO_PKG_VERSION"))), "{version}");
    assert!(!version.contains("commit unknown"), "the commit is named: {version}");
    let config = root.join("etc/leasehold/leasehold.toml");
    let checked = run("leasehold check-config", Command::new(&installed_bin).arg("check-config").arg(&config));
    assert!(checked.contains(": ok"), "{checked}");

    // 3. The unit as installed, with its paths pointed into the root (verify checks that ExecStart
    //    and ExecStartPre name executables).
    let unit = root.join("lib/systemd/system/leasehold.service");
    let text = std::fs::read_to_string(&unit).expect("read the installed unit");
    let checked_unit = dir.path().join("verify").join("leasehold.service");
    std::fs::create_dir_all(checked_unit.parent().expect("a parent")).expect("create a directory");
    std::fs::write(&checked_unit, text.replace("/usr/bin/leasehold", &installed_bin.display().to_string()))
        .expect("write the unit to verify");
    let systemd_analyze = require_tool("systemd-analyze");
    run("systemd-analyze verify", Command::new(&systemd_analyze).arg("verify").arg(&checked_unit));
    let security = run(
        "systemd-analyze security",
        Command::new(&systemd_analyze).args(["security", "--offline=yes", "--no-pager"]).arg(&unit),
    );
    let overall = security.lines().find(|l| l.contains("Overall exposure level")).unwrap_or("").to_string();
    println!("systemd-analyze security: {overall}");
    let exposure: f64 = overall
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{security}"));
    assert!(exposure < 5.0, "the unit's sandbox: {overall}");
}
