//! iPXE scripts per machine: `boot/{mac}.ipxe`, over the boot HTTP listener and over TFTP, renders a
//! `[[boot.script]]` template or the `[boot.menu]` with the machine's values — its MAC, the address
//! and host name of its lease or reservation, the answering node, the arch and class of its last
//! boot request, its reservation's boot file. Which script: the one the request names, else its
//! reservation's, else its class's, else `[boot] default_script`. Pure: the caller looks the
//! machine up (`Engine::machine`); `render` only writes text.

use std::net::Ipv4Addr;

use leasehold_config::{Boot, Menu, Piece, Template, TemplateVar, MENU_SCRIPT};

/// What a script may say about the machine that asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    pub mac: [u8; 6],
    /// Its lease, if it holds one.
    pub ip: Option<Ipv4Addr>,
    pub hostname: Option<String>,
    /// The node that serves the script.
    pub server: Ipv4Addr,
    /// Option 93 of its last boot request.
    pub arch: Option<u16>,
    /// Its class's name.
    pub class: Option<String>,
    /// Its reservation's boot file, else its class's.
    pub boot_file: Option<String>,
    /// The script its reservation, else its class, chooses (`boot_script`).
    pub script: Option<String>,
}

/// `boot/52-54-00-12-34-56.ipxe` (or with colons, any case): the MAC it names.
pub fn script_mac(name: &str) -> Option<[u8; 6]> {
    let hex = name.strip_prefix("boot/")?.strip_suffix(".ipxe")?;
    let mut mac = [0u8; 6];
    let mut parts = hex.split(['-', ':']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// The script `name` (a `[[boot.script]]`, or `menu`) for `machine`; `None` when there is no such
/// script. `name` `None`: the machine's own (`Machine::script`), else `[boot] default_script`.
pub fn render(boot: &Boot, name: Option<&str>, machine: &Machine) -> Option<String> {
    let name = name.or(machine.script.as_deref()).or(boot.default_script.as_deref())?;
    let mut out = String::from("#!ipxe\n");
    if name == MENU_SCRIPT {
        render_menu(boot.menu.as_ref()?, machine, &mut out);
        return Some(out);
    }
    let template = boot.scripts.get(name)?;
    let body = fill(template, machine);
    // The template may carry its own `#!ipxe` line.
    out.push_str(body.strip_prefix("#!ipxe\n").unwrap_or(&body));
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Some(out)
}

fn fill(template: &Template, machine: &Machine) -> String {
    let mut out = String::new();
    for piece in &template.0 {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Var(TemplateVar::Mac) => out.push_str(&format_mac(machine.mac)),
            Piece::Var(TemplateVar::Ip) => out.push_str(&machine.ip.map(|ip| ip.to_string()).unwrap_or_default()),
            Piece::Var(TemplateVar::Hostname) => out.push_str(machine.hostname.as_deref().unwrap_or_default()),
            Piece::Var(TemplateVar::Server) => out.push_str(&machine.server.to_string()),
            Piece::Var(TemplateVar::Arch) => out.push_str(&machine.arch.map(|a| a.to_string()).unwrap_or_default()),
            Piece::Var(TemplateVar::Class) => out.push_str(machine.class.as_deref().unwrap_or_default()),
            Piece::Var(TemplateVar::BootFile) => out.push_str(machine.boot_file.as_deref().unwrap_or_default()),
        }
    }
    out
}

fn format_mac(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// One line of text for iPXE (`menu` and `item` take the rest of their line).
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}

fn render_menu(menu: &Menu, machine: &Machine, out: &mut String) {
    use std::fmt::Write;
    let default = menu.default.as_deref().or(menu.entries.first().map(|e| e.name.as_str())).unwrap_or_default();
    let _ = writeln!(out, "menu {}", one_line(&menu.title));
    for entry in &menu.entries {
        let _ = writeln!(out, "item {} {}", entry.name, one_line(&entry.label));
    }
    let timeout_ms = u64::from(menu.timeout_secs) * 1000;
    let _ = writeln!(out, "choose --timeout {timeout_ms} --default {default} selected || goto {default}");
    let _ = writeln!(out, "goto ${{selected}}");
    for entry in &menu.entries {
        let _ = writeln!(out, ":{}", entry.name);
        let body = fill(&entry.script, machine);
        out.push_str(&body);
        if !body.ends_with('\n') {
            out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use leasehold_config::MenuEntry;

    fn machine() -> Machine {
        Machine {
            mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56],
            ip: Some(Ipv4Addr::new(10, 77, 0, 100)),
            hostname: Some("node-7".into()),
            server: Ipv4Addr::new(10, 77, 0, 1),
            arch: Some(7),
            class: Some("rack-7".into()),
            boot_file: Some("efi/install.efi".into()),
            script: None,
        }
    }

    #[test]
    fn script_names_carry_a_mac() {
        assert_eq!(script_mac("boot/52-54-00-12-34-56.ipxe"), Some(machine().mac));
        assert_eq!(script_mac("boot/52:54:00:12:34:56.ipxe"), Some(machine().mac));
        assert_eq!(script_mac("boot/52-54-00-12-34.ipxe"), None);
        assert_eq!(script_mac("boot/52-54-00-12-34-56-78.ipxe"), None);
        assert_eq!(script_mac("boot/zz-54-00-12-34-56.ipxe"), None);
        assert_eq!(script_mac("52-54-00-12-34-56.ipxe"), None);
    }

    #[test]
    fn a_template_gets_the_machines_values_and_ipxe_settings_pass_through() {
        let mut boot = Boot::default();
        let template = "kernel http://{{server}}/vmlinuz ip={{ip}} hostname={{hostname}} mac={{mac}} x=${net0/mac}";
        boot.scripts.insert("install".into(), Template::parse(template).unwrap());
        let text = render(&boot, Some("install"), &machine()).unwrap();
        assert_eq!(
            text,
            "#!ipxe\nkernel http://10.77.0.1/vmlinuz ip=10.77.0.100 hostname=node-7 mac=52:54:00:12:34:56 x=${net0/mac}\n"
        );
        assert_eq!(render(&boot, None, &machine()), None, "no default script");
        assert_eq!(render(&boot, Some("other"), &machine()), None);
        boot.default_script = Some("install".into());
        assert_eq!(render(&boot, None, &machine()).as_deref(), Some(text.as_str()));
        assert!(Template::parse("{{nope}}").unwrap_err().contains("unknown variable `{{nope}}`"));
        assert!(Template::parse("{{nope}}").unwrap_err().contains("{{class}}, {{boot_file}}"));
        assert!(Template::parse("a {{ip").unwrap_err().contains("never closed"));
    }

    #[test]
    fn arch_class_and_boot_file_fill_in_and_the_machine_chooses_its_script() {
        let mut boot = Boot::default();
        boot.scripts
            .insert("rack".into(), Template::parse("chain {{boot_file}} arch={{arch}} class={{class}}").unwrap());
        boot.scripts.insert("other".into(), Template::parse("echo other").unwrap());
        boot.default_script = Some("other".into());
        let chosen = Machine { script: Some("rack".into()), ..machine() };
        let text = render(&boot, None, &chosen).unwrap();
        assert_eq!(text, "#!ipxe\nchain efi/install.efi arch=7 class=rack-7\n");
        assert_eq!(
            render(&boot, Some("other"), &chosen).as_deref(),
            Some("#!ipxe\necho other\n"),
            "the request names one"
        );
        let unknown = Machine { arch: None, class: None, boot_file: None, ..chosen };
        assert_eq!(render(&boot, Some("rack"), &unknown).as_deref(), Some("#!ipxe\nchain  arch= class=\n"));
        assert_eq!(render(&boot, None, &machine()).as_deref(), Some("#!ipxe\necho other\n"), "the default");
    }

    #[test]
    fn a_menu_becomes_ipxe_menu_item_and_choose() {
        let boot = Boot {
            menu: Some(Menu {
                title: "Pick\none".into(),
                default: Some("local".into()),
                timeout_secs: 5,
                entries: vec![
                    MenuEntry {
                        name: "install".into(),
                        label: "Install".into(),
                        script: Template::parse("echo {{ip}}").unwrap(),
                    },
                    MenuEntry {
                        name: "local".into(),
                        label: "Local disk".into(),
                        script: Template::parse("exit\n").unwrap(),
                    },
                ],
            }),
            default_script: Some("menu".into()),
            ..Boot::default()
        };
        let text = render(&boot, None, &machine()).unwrap();
        assert_eq!(
            text,
            "#!ipxe\nmenu Pick one\nitem install Install\nitem local Local disk\n\
             choose --timeout 5000 --default local selected || goto local\ngoto ${selected}\n\
             :install\necho 10.77.0.100\n:local\nexit\n"
        );
    }
}
