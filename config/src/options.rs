//! DHCP option data as operators write it (Kea's names and types): the standard option
//! definitions, custom ones (`[[option-def]]`), and the typed values of `[[option]]` tables
//! turned into the bytes that go on the wire. Every value is encoded here, when the config is
//! checked, so a bad one is a config error with its key path and the engine only copies bytes.

use std::net::Ipv4Addr;

/// The most bytes one option's data may have. Longer values than 255 bytes are split on the wire
/// (RFC 3396); this keeps every option inside one 1500-byte datagram.
pub const MAX_OPTION_DATA_BYTES: usize = 1024;

/// The type of an option's (or a sub-option's) data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionType {
    /// One IPv4 address.
    Ip,
    /// One or more IPv4 addresses.
    IpList,
    /// Pairs of addresses (RFC 2132 §5.7 policy filter, §5.8 static routes).
    IpPairs,
    U8,
    U16,
    U32,
    I32,
    U16List,
    Bool,
    /// Text, as given (no NUL terminator).
    String,
    /// Raw bytes written as hex octets.
    Hex,
    /// Domain names in DNS wire form with compression (RFC 3397 for option 119, RFC 1035 §4.1.4).
    DomainList,
    /// RFC 3442 classless static routes (option 121): `DEST/LEN ROUTER` entries.
    ClasslessRoutes,
    /// Option 43 (RFC 2132 §8.4): vendor sub-options, each typed.
    VendorSuboptions,
    /// Option 125 (RFC 3925): an enterprise number and its sub-options.
    VendorIdentifying,
}

/// `type` names accepted in `[[option-def]]` and `[[option.suboption]]`, Kea's spelling first.
pub const TYPE_NAMES: &[(&str, OptionType)] = &[
    ("ipv4-address", OptionType::Ip),
    ("ip", OptionType::Ip),
    ("ipv4-address-list", OptionType::IpList),
    ("ip-list", OptionType::IpList),
    ("ip-pairs", OptionType::IpPairs),
    ("uint8", OptionType::U8),
    ("u8", OptionType::U8),
    ("uint16", OptionType::U16),
    ("u16", OptionType::U16),
    ("uint32", OptionType::U32),
    ("u32", OptionType::U32),
    ("int32", OptionType::I32),
    ("i32", OptionType::I32),
    ("uint16-list", OptionType::U16List),
    ("u16-list", OptionType::U16List),
    ("boolean", OptionType::Bool),
    ("bool", OptionType::Bool),
    ("string", OptionType::String),
    ("binary", OptionType::Hex),
    ("hex", OptionType::Hex),
    ("fqdn-list", OptionType::DomainList),
    ("domain-list", OptionType::DomainList),
    ("classless-routes", OptionType::ClasslessRoutes),
];

/// The option type for a `type` name.
pub fn option_type(name: &str) -> Option<OptionType> {
    TYPE_NAMES.iter().find(|(n, _)| *n == name).map(|&(_, t)| t)
}

/// A named option: its code and the type of its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionDef {
    pub name: String,
    pub code: u8,
    pub kind: OptionType,
}

/// RFC 2132 and later options by Kea's names. Codes the server manages itself are in
/// `MANAGED_CODES`, not here.
pub const STANDARD_OPTIONS: &[(&str, u8, OptionType)] = &[
    ("time-offset", 2, OptionType::I32),
    ("routers", 3, OptionType::IpList),
    ("time-servers", 4, OptionType::IpList),
    ("name-servers", 5, OptionType::IpList),
    ("domain-name-servers", 6, OptionType::IpList),
    ("log-servers", 7, OptionType::IpList),
    ("cookie-servers", 8, OptionType::IpList),
    ("lpr-servers", 9, OptionType::IpList),
    ("impress-servers", 10, OptionType::IpList),
    ("resource-location-servers", 11, OptionType::IpList),
    ("host-name", 12, OptionType::String),
    ("boot-size", 13, OptionType::U16),
    ("merit-dump", 14, OptionType::String),
    ("domain-name", 15, OptionType::String),
    ("swap-server", 16, OptionType::Ip),
    ("root-path", 17, OptionType::String),
    ("extensions-path", 18, OptionType::String),
    ("ip-forwarding", 19, OptionType::Bool),
    ("non-local-source-routing", 20, OptionType::Bool),
    ("policy-filter", 21, OptionType::IpPairs),
    ("max-dgram-reassembly", 22, OptionType::U16),
    ("default-ip-ttl", 23, OptionType::U8),
    ("path-mtu-aging-timeout", 24, OptionType::U32),
    ("path-mtu-plateau-table", 25, OptionType::U16List),
    ("interface-mtu", 26, OptionType::U16),
    ("all-subnets-local", 27, OptionType::Bool),
    ("broadcast-address", 28, OptionType::Ip),
    ("perform-mask-discovery", 29, OptionType::Bool),
    ("mask-supplier", 30, OptionType::Bool),
    ("router-discovery", 31, OptionType::Bool),
    ("router-solicitation-address", 32, OptionType::Ip),
    ("static-routes", 33, OptionType::IpPairs),
    ("trailer-encapsulation", 34, OptionType::Bool),
    ("arp-cache-timeout", 35, OptionType::U32),
    ("ieee802-3-encapsulation", 36, OptionType::Bool),
    ("default-tcp-ttl", 37, OptionType::U8),
    ("tcp-keepalive-interval", 38, OptionType::U32),
    ("tcp-keepalive-garbage", 39, OptionType::Bool),
    ("nis-domain", 40, OptionType::String),
    ("nis-servers", 41, OptionType::IpList),
    ("ntp-servers", 42, OptionType::IpList),
    ("vendor-encapsulated-options", 43, OptionType::VendorSuboptions),
    ("netbios-name-servers", 44, OptionType::IpList),
    ("netbios-dd-server", 45, OptionType::IpList),
    ("netbios-node-type", 46, OptionType::U8),
    ("netbios-scope", 47, OptionType::String),
    ("font-servers", 48, OptionType::IpList),
    ("x-display-manager", 49, OptionType::IpList),
    ("vendor-class-identifier", 60, OptionType::String),
    ("nwip-domain-name", 62, OptionType::String),
    ("nisplus-domain-name", 64, OptionType::String),
    ("nisplus-servers", 65, OptionType::IpList),
    ("tftp-server-name", 66, OptionType::String),
    ("boot-file-name", 67, OptionType::String),
    ("mobile-ip-home-agent", 68, OptionType::IpList),
    ("smtp-server", 69, OptionType::IpList),
    ("pop-server", 70, OptionType::IpList),
    ("nntp-server", 71, OptionType::IpList),
    ("www-server", 72, OptionType::IpList),
    ("finger-server", 73, OptionType::IpList),
    ("irc-server", 74, OptionType::IpList),
    ("streettalk-server", 75, OptionType::IpList),
    ("streettalk-directory-assistance-server", 76, OptionType::IpList),
    ("nds-servers", 85, OptionType::IpList),
    ("nds-tree-name", 86, OptionType::String),
    ("nds-context", 87, OptionType::String),
    ("pcode", 100, OptionType::String),
    ("tcode", 101, OptionType::String),
    ("v6-only-preferred", 108, OptionType::U32),
    ("netinfo-server-address", 112, OptionType::IpList),
    ("netinfo-server-tag", 113, OptionType::String),
    ("v4-captive-portal", 114, OptionType::String),
    ("auto-config", 116, OptionType::U8),
    ("domain-search", 119, OptionType::DomainList),
    ("classless-static-route", 121, OptionType::ClasslessRoutes),
    ("vivso-suboptions", 125, OptionType::VendorIdentifying),
    ("capwap-ac-v4", 138, OptionType::IpList),
    ("sip-ua-cs-domains", 141, OptionType::DomainList),
];

/// Codes the server itself fills in from the protocol and the pool, which options may not set.
pub const MANAGED_CODES: &[(u8, &str)] = &[
    (0, "pad"),
    (1, "the subnet mask, which comes from the pool's subnet"),
    (50, "the requested address"),
    (51, "the lease time: set lease_time_secs"),
    (52, "option overload, which the server decides"),
    (53, "the message type"),
    (54, "the server identifier: set server_ip"),
    (55, "the parameter request list"),
    (56, "the server's message"),
    (57, "the maximum message size"),
    (58, "the renewal time: set renewal_time_secs"),
    (59, "the rebinding time: set rebinding_time_secs"),
    (61, "the client identifier, echoed (RFC 6842)"),
    (82, "the relay agent information, echoed (RFC 3046)"),
    (118, "the subnet selection, echoed (RFC 3011)"),
    (255, "end"),
];

/// Why a code may not be set by an option, if it may not.
pub fn managed_code(code: u8) -> Option<&'static str> {
    MANAGED_CODES.iter().find(|(c, _)| *c == code).map(|&(_, why)| why)
}

/// A standard option by name or code.
pub fn standard_option(name: Option<&str>, code: Option<u8>) -> Option<OptionDef> {
    STANDARD_OPTIONS
        .iter()
        .find(|(n, c, _)| name.is_some_and(|name| name == *n) || code == Some(*c))
        .map(|&(name, code, kind)| OptionDef { name: name.to_string(), code, kind })
}

/// One option's checked data: the bytes that go on the wire (maybe more than 255; the encoder
/// splits them, RFC 3396).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpOption {
    pub code: u8,
    pub data: Vec<u8>,
    /// Sent even when the client's parameter request list (option 55) does not ask for it.
    pub always_send: bool,
}

/// The options of one scope (global, pool, class, reservation), at most one per code, by code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OptionSet(pub Vec<DhcpOption>);

impl OptionSet {
    pub fn get(&self, code: u8) -> Option<&DhcpOption> {
        self.0.iter().find(|o| o.code == code)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, DhcpOption> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A value as written in TOML, typed by the option definition: a string (comma-separated for
/// lists, as Kea writes them), an array, an integer or a boolean.
pub fn encode_value(kind: OptionType, value: &toml::Value) -> Result<Vec<u8>, String> {
    let data = match kind {
        OptionType::Ip => ip(&scalar_text(value)?)?.octets().to_vec(),
        OptionType::IpList => {
            let items = list(value)?;
            if items.is_empty() {
                return Err("needs at least one address".into());
            }
            items.iter().map(|text| ip(text)).collect::<Result<Vec<_>, _>>()?.iter().flat_map(|a| a.octets()).collect()
        }
        OptionType::IpPairs => {
            let items = list(value)?;
            let mut out = Vec::new();
            for item in &items {
                let parts: Vec<&str> = item.split_whitespace().collect();
                let [a, b] = parts[..] else {
                    return Err(format!("`{item}` is not a pair of addresses: write \"ADDRESS ADDRESS\""));
                };
                out.extend(ip(a)?.octets());
                out.extend(ip(b)?.octets());
            }
            if out.is_empty() {
                return Err("needs at least one pair".into());
            }
            out
        }
        OptionType::U8 => vec![u8::try_from(integer(value)?).map_err(|_| "must be 0 to 255".to_string())?],
        OptionType::U16 => {
            u16::try_from(integer(value)?).map_err(|_| "must be 0 to 65535".to_string())?.to_be_bytes().to_vec()
        }
        OptionType::U32 => {
            u32::try_from(integer(value)?).map_err(|_| "must be 0 to 4294967295".to_string())?.to_be_bytes().to_vec()
        }
        OptionType::I32 => i32::try_from(integer(value)?)
            .map_err(|_| "must be -2147483648 to 2147483647".to_string())?
            .to_be_bytes()
            .to_vec(),
        OptionType::U16List => {
            let mut out = Vec::new();
            for item in list_values(value)? {
                let n = integer(&item)?;
                out.extend(u16::try_from(n).map_err(|_| format!("{n} must be 0 to 65535"))?.to_be_bytes());
            }
            if out.is_empty() {
                return Err("needs at least one number".into());
            }
            out
        }
        OptionType::Bool => vec![u8::from(boolean(value)?)],
        OptionType::String => {
            let text = scalar_text(value)?;
            if text.is_empty() {
                return Err("is empty".into());
            }
            if text.contains('\0') {
                return Err("contains a NUL byte".into());
            }
            text.into_bytes()
        }
        OptionType::Hex => hex(&scalar_text(value)?)?,
        OptionType::DomainList => domain_list(&list(value)?)?,
        OptionType::ClasslessRoutes => classless_routes(&list(value)?)?,
        OptionType::VendorSuboptions | OptionType::VendorIdentifying => {
            return Err("takes [[...suboption]] tables, not data".into());
        }
    };
    if data.len() > MAX_OPTION_DATA_BYTES {
        return Err(format!("encodes to {} bytes; an option holds at most {MAX_OPTION_DATA_BYTES}", data.len()));
    }
    Ok(data)
}

fn scalar_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        other => Err(format!("expected one value, got {}", other.type_str())),
    }
}

/// The items of a list: an array of strings, or one string with comma-separated items.
fn list(value: &toml::Value) -> Result<Vec<String>, String> {
    match value {
        toml::Value::String(text) => {
            Ok(text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect())
        }
        toml::Value::Array(items) => items.iter().map(scalar_text).collect(),
        other => Err(format!("expected a list (an array, or a comma-separated string), got {}", other.type_str())),
    }
}

fn list_values(value: &toml::Value) -> Result<Vec<toml::Value>, String> {
    match value {
        toml::Value::Array(items) => Ok(items.clone()),
        toml::Value::String(_) => Ok(list(value)?.into_iter().map(toml::Value::String).collect()),
        other => Ok(vec![other.clone()]),
    }
}

fn integer(value: &toml::Value) -> Result<i64, String> {
    match value {
        toml::Value::Integer(n) => Ok(*n),
        toml::Value::String(text) => text.trim().parse().map_err(|_| format!("`{text}` is not a number")),
        other => Err(format!("expected a number, got {}", other.type_str())),
    }
}

fn boolean(value: &toml::Value) -> Result<bool, String> {
    match value {
        toml::Value::Boolean(b) => Ok(*b),
        toml::Value::String(text) if text == "true" => Ok(true),
        toml::Value::String(text) if text == "false" => Ok(false),
        other => Err(format!("expected true or false, got {other}")),
    }
}

fn ip(text: &str) -> Result<Ipv4Addr, String> {
    text.trim().parse().map_err(|_| format!("`{text}` is not an IPv4 address"))
}

/// Hex octets: `0a:0b:0c`, `0a 0b 0c`, `0a0b0c` or `0x0a0b0c`.
pub fn hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String =
        text.trim().trim_start_matches("0x").chars().filter(|c| !matches!(c, ':' | ' ' | '-')).collect();
    if !digits.len().is_multiple_of(2) || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("`{text}` is not hex octets (like 0a:0b:0c or 0a0b0c)"));
    }
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| e.to_string())).collect()
}

/// RFC 1035 §3.1 names with §4.1.4 compression, as RFC 3397 wants for option 119: a suffix seen
/// before is a two-byte pointer to where it was first written (offsets into the option's data).
pub fn domain_list(names: &[String]) -> Result<Vec<u8>, String> {
    if names.is_empty() {
        return Err("needs at least one domain name".into());
    }
    let mut out = Vec::new();
    let mut suffixes: Vec<(String, usize)> = Vec::new();
    for name in names {
        let trimmed = name.trim().trim_end_matches('.');
        if trimmed.is_empty() || trimmed.len() > 253 {
            return Err(format!("`{name}` is not a domain name (1 to 253 characters)"));
        }
        let labels: Vec<&str> = trimmed.split('.').collect();
        if let Some(bad) = labels.iter().find(|l| l.is_empty() || l.len() > 63) {
            return Err(format!("`{name}`: label `{bad}` must be 1 to 63 characters"));
        }
        let mut pointed = false;
        for i in 0..labels.len() {
            let suffix = labels[i..].join(".").to_ascii_lowercase();
            if let Some(&(_, offset)) = suffixes.iter().find(|(s, _)| *s == suffix) {
                // 0xC000 | offset; offsets past 0x3FFF are never recorded below.
                out.extend([0xc0 | (offset >> 8) as u8, (offset & 0xff) as u8]);
                pointed = true;
                break;
            }
            if out.len() <= 0x3fff {
                suffixes.push((suffix, out.len()));
            }
            out.push(labels[i].len() as u8);
            out.extend(labels[i].as_bytes());
        }
        if !pointed {
            out.push(0);
        }
    }
    Ok(out)
}

/// RFC 3442 §3: per route the prefix length, the significant octets of the destination, and the
/// router. Entries are `DEST/LEN ROUTER` (also `DEST/LEN - ROUTER` as Kea writes them, or
/// `DEST/LEN via ROUTER`); `0.0.0.0/0 ROUTER` is the default route.
pub fn classless_routes(entries: &[String]) -> Result<Vec<u8>, String> {
    if entries.is_empty() {
        return Err("needs at least one route".into());
    }
    let mut out = Vec::new();
    for entry in entries {
        let words: Vec<&str> = entry.split_whitespace().filter(|w| !matches!(*w, "-" | "via" | "->")).collect();
        let [destination, router] = words[..] else {
            return Err(format!("`{entry}` is not a route: write \"DEST/LEN ROUTER\", like \"10.1.0.0/16 10.0.0.1\""));
        };
        let (network, len) = destination
            .split_once('/')
            .and_then(|(n, l)| Some((n.parse::<Ipv4Addr>().ok()?, l.parse::<u8>().ok().filter(|l| *l <= 32)?)))
            .ok_or_else(|| format!("`{destination}` is not a destination: write ADDRESS/PREFIX, like 10.1.0.0/16"))?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        if u32::from(network) & !mask != 0 {
            return Err(format!("`{destination}` has host bits set"));
        }
        out.push(len);
        out.extend(&network.octets()[..usize::from(len).div_ceil(8)]);
        out.extend(ip(router)?.octets());
    }
    Ok(out)
}

/// Sub-options as one option's data (option 43, or one enterprise's part of 125): code, length,
/// value, each at most 255 bytes.
pub fn suboptions(parts: &[(u8, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for (code, data) in parts {
        let len = u8::try_from(data.len()).map_err(|_| format!("sub-option {code} is over 255 bytes"))?;
        out.push(*code);
        out.push(len);
        out.extend(data);
    }
    Ok(out)
}

/// Option 125 data for one enterprise (RFC 3925 §4): enterprise number, data length, sub-options.
pub fn vendor_identifying(enterprise: u32, suboption_bytes: &[u8]) -> Result<Vec<u8>, String> {
    let len = u8::try_from(suboption_bytes.len())
        .map_err(|_| format!("the sub-options of enterprise {enterprise} are over 255 bytes (RFC 3925 §4)"))?;
    let mut out = enterprise.to_be_bytes().to_vec();
    out.push(len);
    out.extend(suboption_bytes);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> toml::Value {
        toml::Value::String(text.into())
    }

    #[test]
    fn rfc3397_domain_search_is_compressed() {
        // RFC 3397 §3's example: eng.apple.com and marketing.apple.com.
        let bytes = domain_list(&["eng.apple.com".into(), "marketing.apple.com".into()]).unwrap();
        let mut expected = vec![3, b'e', b'n', b'g', 5, b'a', b'p', b'p', b'l', b'e', 3, b'c', b'o', b'm', 0];
        expected.extend([9, b'm', b'a', b'r', b'k', b'e', b't', b'i', b'n', b'g', 0xc0, 0x04]);
        assert_eq!(bytes, expected);
    }

    #[test]
    fn rfc3442_routes_carry_only_significant_octets() {
        let bytes = classless_routes(&[
            "0.0.0.0/0 10.0.0.1".into(),
            "10.0.0.0/8 - 10.0.0.2".into(),
            "10.17.0.0/16 via 10.0.0.3".into(),
            "10.27.129.0/24 10.0.0.4".into(),
            "10.229.0.128/25 10.0.0.5".into(),
        ])
        .unwrap();
        assert_eq!(
            bytes,
            vec![
                0, 10, 0, 0, 1, //
                8, 10, 10, 0, 0, 2, //
                16, 10, 17, 10, 0, 0, 3, //
                24, 10, 27, 129, 10, 0, 0, 4, //
                25, 10, 229, 0, 128, 10, 0, 0, 5,
            ]
        );
        assert!(classless_routes(&["10.0.0.1/8 10.0.0.1".into()]).unwrap_err().contains("host bits"));
        assert!(classless_routes(&["10.0.0.0/8".into()]).is_err());
    }

    #[test]
    fn typed_values_encode_as_rfc2132_says() {
        assert_eq!(encode_value(OptionType::IpList, &s("10.0.0.1, 10.0.0.2")).unwrap(), [10, 0, 0, 1, 10, 0, 0, 2]);
        let array = toml::Value::Array(vec![s("10.0.0.1"), s("10.0.0.2")]);
        assert_eq!(encode_value(OptionType::IpList, &array).unwrap(), [10, 0, 0, 1, 10, 0, 0, 2]);
        assert_eq!(encode_value(OptionType::U16, &toml::Value::Integer(9000)).unwrap(), [0x23, 0x28]);
        assert_eq!(encode_value(OptionType::I32, &toml::Value::Integer(-3600)).unwrap(), (-3600i32).to_be_bytes());
        assert_eq!(encode_value(OptionType::Bool, &toml::Value::Boolean(true)).unwrap(), [1]);
        assert_eq!(encode_value(OptionType::Hex, &s("0a:0B:ff")).unwrap(), [10, 11, 255]);
        assert_eq!(encode_value(OptionType::Hex, &s("0x0a0b")).unwrap(), [10, 11]);
        assert_eq!(encode_value(OptionType::IpPairs, &s("10.0.0.0 10.0.0.1")).unwrap(), [10, 0, 0, 0, 10, 0, 0, 1]);
        assert!(encode_value(OptionType::U8, &toml::Value::Integer(256)).unwrap_err().contains("0 to 255"));
        assert!(encode_value(OptionType::Ip, &s("10.0.0")).unwrap_err().contains("not an IPv4 address"));
        assert!(encode_value(OptionType::Hex, &s("abc")).is_err());
        assert!(encode_value(OptionType::String, &s("")).is_err());
        let long = toml::Value::Array((0..300).map(|i| s(&format!("10.0.{}.{}", i / 250, i % 250))).collect());
        assert!(encode_value(OptionType::IpList, &long).unwrap_err().contains("at most"));
    }

    #[test]
    fn vendor_options_nest_their_suboptions() {
        // PXE discovery control (sub-option 6) = 8: "use the boot file in the offer".
        assert_eq!(suboptions(&[(6, vec![8])]).unwrap(), [6, 1, 8]);
        assert_eq!(vendor_identifying(3561, &[1, 2, b'a', b'b']).unwrap(), [0, 0, 0x0d, 0xe9, 4, 1, 2, b'a', b'b']);
    }
}
