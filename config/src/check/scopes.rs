//! The option scopes (`[[option]]`, `[[pool.option]]`, `[[class.option]]`,
//! `[[reservation.option]]`), custom option definitions (`[[option-def]]`) and client classes
//! (`[[class]]`): raw tables into checked `OptionSet`s and `Class`es, every problem with its key.

use std::net::Ipv4Addr;

use super::{arch_code, Ctx, Key, ARCH_NAMES};
use crate::options::{
    encode_value, hex, managed_code, option_type, standard_option, suboptions, vendor_identifying, DhcpOption,
    OptionDef, OptionSet, OptionType, TYPE_NAMES,
};
use crate::raw::{RawClass, RawClassMatch, RawOption, RawOptionDef};
use crate::{ArchCode, Class, ClassMatch, Subnet};

/// The option definitions in force: the standard ones and the file's `[[option-def]]`s.
pub(super) struct Definitions {
    custom: Vec<OptionDef>,
}

impl Definitions {
    fn find(&self, name: Option<&str>, code: Option<u8>) -> Option<OptionDef> {
        let custom = self.custom.iter().find(|d| name == Some(d.name.as_str()) || code == Some(d.code)).cloned();
        custom.or_else(|| standard_option(name, code))
    }
}

/// An option code from a wide integer: 1 to 254 (0 is pad, 255 is end).
fn option_code(cx: &mut Ctx<'_>, key: &Key, code: i64) -> Option<u8> {
    match u8::try_from(code) {
        Ok(code) if (1..=254).contains(&code) => Some(code),
        _ => {
            cx.error(key, format!("{code} is not an option code: use 1 to 254"));
            None
        }
    }
}

fn type_names() -> String {
    TYPE_NAMES.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

pub(super) fn check_option_defs(cx: &mut Ctx<'_>, raws: &[RawOptionDef]) -> Definitions {
    let mut custom: Vec<OptionDef> = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        let key = |field: &str| Key::path(format!("option-def[{index}].{field}"));
        let name = match &raw.name {
            Some(name) if !name.is_empty() && !name.contains(char::is_whitespace) => Some(name.clone()),
            Some(name) => {
                cx.error(&key("name"), format!("`{name}` is not an option name (no spaces, not empty)"));
                None
            }
            None => {
                cx.error(&key("name"), "missing: the name options will use for this code");
                None
            }
        };
        let code = match raw.code {
            Some(code) => option_code(cx, &key("code"), code),
            None => {
                cx.error(&key("code"), "missing: the option code (1 to 254)");
                None
            }
        };
        let kind = match raw.kind.as_deref() {
            Some(text) => option_type(text).or_else(|| {
                cx.error(&key("type"), format!("`{text}` is not an option type; use one of {}", type_names()));
                None
            }),
            None => {
                cx.error(&key("type"), format!("missing: one of {}", type_names()));
                None
            }
        };
        if let Some(code) = code {
            if let Some(why) = managed_code(code) {
                cx.error(&key("code"), format!("option {code} is {why}; it cannot be redefined"));
                continue;
            }
            if let Some(standard) = standard_option(None, Some(code)) {
                cx.error(&key("code"), format!("option {code} is the standard `{}`", standard.name));
                continue;
            }
        }
        if let Some(name) = &name {
            if let Some(standard) = standard_option(Some(name), None) {
                cx.error(&key("name"), format!("`{name}` is the standard option {}", standard.code));
                continue;
            }
        }
        if let (Some(name), Some(code), Some(kind)) = (name, code, kind) {
            if let Some(other) = custom.iter().position(|d| d.name == name || d.code == code) {
                cx.error(&key("code"), format!("option-def[{other}] already defines this name or code"));
                continue;
            }
            custom.push(OptionDef { name, code, kind });
        }
    }
    Definitions { custom }
}

/// One scope's options, keys under `prefix` (`option`, `pool[0].option`, ...).
pub(super) fn check_options(cx: &mut Ctx<'_>, prefix: &str, raws: &[RawOption], defs: &Definitions) -> OptionSet {
    let mut set: Vec<DhcpOption> = Vec::new();
    let mut positions: Vec<(u8, usize)> = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        let at = format!("{prefix}[{index}]");
        if let Some(option) = check_option(cx, &at, raw, defs) {
            if let Some(&(_, first)) = positions.iter().find(|(code, _)| *code == option.code) {
                cx.error(&Key::path(&at), format!("option {} is already set by {prefix}[{first}]", option.code));
                continue;
            }
            positions.push((option.code, index));
            set.push(option);
        }
    }
    set.sort_by_key(|o| o.code);
    OptionSet(set)
}

fn check_option(cx: &mut Ctx<'_>, at: &str, raw: &RawOption, defs: &Definitions) -> Option<DhcpOption> {
    let key = |field: &str| Key::path(format!("{at}.{field}"));
    let code = match raw.code {
        Some(code) => Some(option_code(cx, &key("code"), code)?),
        None => None,
    };
    let def = match (&raw.name, code) {
        (None, None) => {
            cx.error(&Key::path(at), "give the option's `name` or `code`");
            return None;
        }
        (Some(name), _) => {
            let Some(def) = defs.find(Some(name), None) else {
                cx.error(
                    &key("name"),
                    format!("`{name}` is not a known option (use `code`, or define it in [[option-def]])"),
                );
                return None;
            };
            if code.is_some_and(|code| code != def.code) {
                cx.error(&key("code"), format!("`{name}` is option {}, not {}", def.code, code.unwrap_or(0)));
                return None;
            }
            Some(def)
        }
        (None, Some(code)) => defs.find(None, Some(code)),
    };
    let code = def.as_ref().map(|d| d.code).or(code)?;
    if let Some(why) = managed_code(code) {
        cx.error(&key(if raw.name.is_some() { "name" } else { "code" }), format!("option {code} is {why}"));
        return None;
    }
    // An option without a definition carries hex data.
    let kind = def.map_or(OptionType::Hex, |d| d.kind);
    let raw_hex = raw.csv_format == Some(false);
    let vendor = matches!(kind, OptionType::VendorSuboptions | OptionType::VendorIdentifying);
    let data = if vendor && !raw_hex {
        if raw.data.is_some() {
            cx.error(
                &key("data"),
                "a vendor option takes [[...suboption]] tables (or csv_format = false and hex data)",
            );
            return None;
        }
        vendor_data(cx, at, raw, kind)?
    } else {
        if !raw.suboptions.is_empty() {
            cx.error(&key("suboption"), format!("option {code} has no sub-options"));
            return None;
        }
        if raw.enterprise.is_some() {
            cx.error(&key("enterprise"), "only option 125 (vivso-suboptions) has an enterprise number");
            return None;
        }
        let Some(value) = &raw.data else {
            cx.error(&key("data"), "missing: the option's value");
            return None;
        };
        let encoded = if raw_hex {
            match value {
                toml::Value::String(text) => hex(text),
                other => Err(format!("csv_format = false takes hex octets as a string, got {}", other.type_str())),
            }
        } else {
            encode_value(kind, value)
        };
        match encoded {
            Ok(bytes) => bytes,
            Err(problem) => {
                cx.error(&key("data"), problem);
                return None;
            }
        }
    };
    Some(DhcpOption { code, data, always_send: raw.always_send.unwrap_or(false) })
}

/// The data of option 43 (sub-options) or 125 (enterprise + sub-options).
fn vendor_data(cx: &mut Ctx<'_>, at: &str, raw: &RawOption, kind: OptionType) -> Option<Vec<u8>> {
    if raw.suboptions.is_empty() {
        cx.error(&Key::path(format!("{at}.suboption")), "missing: at least one [[...suboption]] table");
        return None;
    }
    let errors_before = cx.errors.len();
    // Option 43 has no enterprise number; option 125 needs one (RFC 3925 §4).
    let enterprise_key = Key::path(format!("{at}.enterprise"));
    let enterprise = match (kind, raw.enterprise.map(u32::try_from)) {
        (OptionType::VendorSuboptions, None) => None,
        (OptionType::VendorSuboptions, Some(_)) => {
            cx.error(&enterprise_key, "option 43 has no enterprise number (option 125 does)");
            None
        }
        (_, Some(Ok(enterprise))) => Some(enterprise),
        (_, Some(Err(_))) => {
            cx.error(&enterprise_key, "must be 0 to 4294967295 (an IANA enterprise number)");
            None
        }
        (_, None) => {
            cx.error(&enterprise_key, "missing: option 125 needs the vendor's IANA enterprise number");
            None
        }
    };
    let mut parts = Vec::new();
    for (index, sub) in raw.suboptions.iter().enumerate() {
        let key = |field: &str| Key::path(format!("{at}.suboption[{index}].{field}"));
        let code = match sub.code {
            Some(code) => option_code(cx, &key("code"), code),
            None => {
                cx.error(&key("code"), "missing: the sub-option code");
                None
            }
        };
        let sub_kind = match sub.kind.as_deref() {
            Some(text) => option_type(text).or_else(|| {
                cx.error(&key("type"), format!("`{text}` is not an option type; use one of {}", type_names()));
                None
            }),
            None => Some(OptionType::Hex),
        };
        let data = match (&sub.data, sub_kind) {
            (Some(value), Some(sub_kind)) => match encode_value(sub_kind, value) {
                Ok(bytes) => Some(bytes),
                Err(problem) => {
                    cx.error(&key("data"), problem);
                    None
                }
            },
            (None, _) => {
                cx.error(&key("data"), "missing: the sub-option's value");
                None
            }
            (_, None) => None,
        };
        if let (Some(code), Some(data)) = (code, data) {
            parts.push((code, data));
        }
    }
    if cx.errors.len() > errors_before {
        return None;
    }
    let key = Key::path(format!("{at}.suboption"));
    let nested = match suboptions(&parts) {
        Ok(bytes) => bytes,
        Err(problem) => {
            cx.error(&key, problem);
            return None;
        }
    };
    let Some(enterprise) = enterprise else { return Some(nested) };
    match vendor_identifying(enterprise, &nested) {
        Ok(bytes) => Some(bytes),
        Err(problem) => {
            cx.error(&key, problem);
            None
        }
    }
}

/// The `[[class]]` tables; `pools` are the checked pools' names by index.
pub(super) fn check_classes(
    cx: &mut Ctx<'_>,
    raws: &[RawClass],
    pools: &[(usize, String)],
    defs: &Definitions,
) -> Vec<Class> {
    let mut classes: Vec<Class> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        let errors_before = cx.errors.len();
        let at = format!("class[{index}]");
        let key = |field: &str| Key::path(format!("{at}.{field}"));
        let name = match &raw.name {
            Some(name) if name.is_empty() => {
                cx.error(&key("name"), "is empty; give the class a name or leave the key out");
                String::new()
            }
            Some(name) => name.clone(),
            None => format!("class{index}"),
        };
        if let Some(other) = names.iter().position(|n| *n == name) {
            cx.error(&key("name"), format!("`{name}` is already the name of class[{other}]"));
        }
        names.push(name.clone());
        let matcher = check_match(cx, &at, raw.matcher.as_ref().unwrap_or(&RawClassMatch::default()));
        let mut pool_index = |field: &str, names: &[String]| -> Vec<usize> {
            names
                .iter()
                .enumerate()
                .filter_map(|(i, wanted)| {
                    let found = pools.iter().find(|(_, name)| name == wanted).map(|(index, _)| *index);
                    if found.is_none() {
                        cx.error(&key(&format!("{field}[{i}]")), format!("`{wanted}` is not the name of a pool"));
                    }
                    found
                })
                .collect()
        };
        let selected = raw.pools.as_ref().map(|names| pool_index("pools", names));
        let forbid_pools = pool_index("forbid_pools", &raw.forbid_pools);
        let boot_file = raw.boot_file.as_deref().and_then(|file| cx.boot_file(&key("boot_file"), file));
        let next_server = raw.next_server.as_deref().and_then(|text| cx.ipv4(&key("next_server"), text));
        let ipxe_script_url = raw.ipxe_script_url.as_deref().and_then(|url| cx.boot_file(&key("ipxe_script_url"), url));
        let lease_time_secs = raw.lease_time_secs.and_then(|secs| cx.positive(&key("lease_time_secs"), secs));
        let options = check_options(cx, &format!("{at}.option"), &raw.options, defs);
        if cx.errors.len() == errors_before {
            classes.push(Class {
                name,
                matcher,
                pools: selected,
                forbid_pools,
                boot_file,
                next_server,
                ipxe_script_url,
                boot_script: raw.boot_script.clone(),
                lease_time_secs,
                options,
            });
        }
    }
    classes
}

/// Text, or `hex:` and octets.
fn text_or_hex(cx: &mut Ctx<'_>, key: &Key, text: &str) -> Option<Vec<u8>> {
    let bytes = match text.strip_prefix("hex:") {
        Some(octets) => match hex(octets) {
            Ok(bytes) => bytes,
            Err(problem) => {
                cx.error(key, problem);
                return None;
            }
        },
        None => text.as_bytes().to_vec(),
    };
    if bytes.is_empty() {
        cx.error(key, "is empty");
        return None;
    }
    Some(bytes)
}

fn check_match(cx: &mut Ctx<'_>, at: &str, raw: &RawClassMatch) -> ClassMatch {
    let key = |field: &str| Key::path(format!("{at}.match.{field}"));
    let vendor_class_prefix = raw.vendor_class.as_deref().and_then(|t| text_or_hex(cx, &key("vendor_class"), t));
    let user_class = raw.user_class.as_deref().and_then(|t| text_or_hex(cx, &key("user_class"), t));
    let circuit_id = raw.circuit_id.as_deref().and_then(|t| text_or_hex(cx, &key("circuit_id"), t));
    let remote_id = raw.remote_id.as_deref().and_then(|t| text_or_hex(cx, &key("remote_id"), t));
    let mut octets = |field: &str, text: &Option<String>| -> Option<Vec<u8>> {
        let text = text.as_deref()?;
        match hex(text) {
            Ok(bytes) if !bytes.is_empty() => Some(bytes),
            Ok(_) => {
                cx.error(&key(field), "is empty");
                None
            }
            Err(problem) => {
                cx.error(&key(field), problem);
                None
            }
        }
    };
    let client_interface_prefix = octets("client_interface", &raw.client_interface);
    let mac_prefix = octets("mac_prefix", &raw.mac_prefix);
    if mac_prefix.as_ref().is_some_and(|p| p.len() > 6) {
        cx.error(&key("mac_prefix"), "is longer than a MAC address (6 octets)");
    }
    let giaddr = raw.giaddr.as_deref().and_then(|text| {
        if text.contains('/') {
            cx.subnet(&key("giaddr"), text)
        } else {
            cx.ipv4(&key("giaddr"), text).map(|network: Ipv4Addr| Subnet { network, prefix_len: 32 })
        }
    });
    let arch = match &raw.arch {
        None => Vec::new(),
        Some(value) => {
            let items = match value {
                toml::Value::Array(items) => items.clone(),
                other => vec![other.clone()],
            };
            let mut codes: Vec<ArchCode> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let code = match item {
                    toml::Value::Integer(n) => ArchCode::try_from(*n).ok(),
                    toml::Value::String(text) => arch_code(text),
                    _ => None,
                };
                match code {
                    Some(code) => codes.push(code),
                    None => {
                        let names: Vec<&str> = ARCH_NAMES.iter().map(|(name, _)| *name).collect();
                        cx.error(
                            &key(&format!("arch[{i}]")),
                            format!("`{item}` is not an architecture: a code 0-65535 or one of {}", names.join(", ")),
                        );
                    }
                }
            }
            codes
        }
    };
    ClassMatch {
        vendor_class_prefix,
        user_class,
        arch,
        client_interface_prefix,
        circuit_id,
        remote_id,
        giaddr,
        mac_prefix,
    }
}
