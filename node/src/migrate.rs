//! The lease files of the servers operators move from — Kea's memfile CSV and ISC dhcpd's
//! dhcpd.leases — read into the leases `leasehold import` sends (the active ones, last record of an
//! address winning, as both servers read their own files), and written back out by
//! `leasehold export`. Pure text in, text out; the CLI does the files and the admin API.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use leasehold_node::engine::import::ImportedLease;

/// A lease file reader: its text and the time now (Unix seconds).
pub type Parser = fn(&str, u64) -> Result<Parsed, String>;

/// What a lease file held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Active leases, in address order.
    pub active: Vec<ImportedLease>,
    /// Addresses whose last record is not an active lease (ended, released, declined, free).
    pub inactive: usize,
}

fn finish(last: BTreeMap<Ipv4Addr, Option<ImportedLease>>) -> Parsed {
    let mut parsed = Parsed::default();
    for lease in last.into_values() {
        match lease {
            Some(lease) => parsed.active.push(lease),
            None => parsed.inactive += 1,
        }
    }
    parsed
}

/// Kea's memfile (`kea-leases4.csv`): a header naming the columns, then one row per lease change; a
/// row whose `state` is not 0 (default), whose `valid_lifetime` is 0 (deleted) or whose `expire` has
/// passed at `now_secs` is not active.
pub fn parse_kea_csv(text: &str, now_secs: u64) -> Result<Parsed, String> {
    let mut lines = text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty());
    let (_, header) = lines.next().ok_or("empty file: no header line")?;
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    let column = |name: &str| {
        columns.iter().position(|c| *c == name).ok_or(format!("line 1: the header has no `{name}` column: {header}"))
    };
    let (address, hwaddr, client_id, lifetime, expire, hostname, state) = (
        column("address")?,
        column("hwaddr")?,
        column("client_id")?,
        column("valid_lifetime")?,
        column("expire")?,
        column("hostname")?,
        column("state")?,
    );
    let mut last = BTreeMap::new();
    for (number, line) in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let field = |index: usize| fields.get(index).map(|f| f.trim()).unwrap_or("");
        let problem = |what: &str| format!("line {}: {what}: {line}", number + 1);
        let ip: Ipv4Addr = field(address).parse().map_err(|_| problem("the address is not IPv4"))?;
        let number_of = |index: usize, name: &str| -> Result<u64, String> {
            let text = field(index);
            if text.is_empty() {
                return Ok(0);
            }
            text.parse().map_err(|_| problem(&format!("{name} is not a number")))
        };
        let (valid, ends, lease_state) =
            (number_of(lifetime, "valid_lifetime")?, number_of(expire, "expire")?, number_of(state, "state")?);
        let active = lease_state == 0 && valid > 0 && ends > now_secs && !field(hwaddr).is_empty();
        let lease = active.then(|| ImportedLease {
            ip,
            mac: field(hwaddr).to_ascii_lowercase(),
            client_id: Some(field(client_id).to_ascii_lowercase()).filter(|id| !id.is_empty()),
            expires_at: ends,
            // Kea writes a comma inside a value as "&#x2c".
            hostname: Some(field(hostname).replace("&#x2c", ",")).filter(|h| !h.is_empty()),
        });
        last.insert(ip, lease);
    }
    Ok(finish(last))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (month + if month > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// A dhcpd.leases time: `W YYYY/MM/DD HH:MM:SS` (UTC), `epoch SECONDS`, or `never`.
fn dhcpd_time(words: &[&str]) -> Option<u64> {
    match words {
        ["never"] => Some(u64::MAX),
        ["epoch", seconds, ..] => seconds.parse().ok(),
        [_weekday, date, time, ..] => {
            let date: Vec<i64> = date.split('/').map(|n| n.parse().ok()).collect::<Option<_>>()?;
            let time: Vec<i64> = time.split(':').map(|n| n.parse().ok()).collect::<Option<_>>()?;
            let ([year, month, day], [hour, minute, second]) = (date.as_slice(), time.as_slice()) else {
                return None;
            };
            let secs = days_from_civil(*year, *month, *day) * 86_400 + hour * 3600 + minute * 60 + second;
            u64::try_from(secs).ok()
        }
        _ => None,
    }
}

/// A dhcpd.leases `uid`: a quoted string with C octal escapes, or colon-separated hex.
fn dhcpd_uid(value: &str) -> Option<String> {
    let bytes: Vec<u8> = if let Some(quoted) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        let mut bytes = Vec::new();
        let mut chars = quoted.bytes().peekable();
        while let Some(byte) = chars.next() {
            if byte != b'\\' {
                bytes.push(byte);
                continue;
            }
            let mut octal = String::new();
            while octal.len() < 3 && chars.peek().is_some_and(|c| (b'0'..=b'7').contains(c)) {
                octal.push(char::from(chars.next()?));
            }
            match octal.is_empty() {
                true => bytes.push(chars.next()?),
                false => bytes.push(u8::from_str_radix(&octal, 8).ok()?),
            }
        }
        bytes
    } else {
        value.split(':').map(|b| u8::from_str_radix(b, 16).ok()).collect::<Option<_>>()?
    };
    (!bytes.is_empty()).then(|| bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
}

/// ISC dhcpd's `dhcpd.leases`: `lease IP { … }` blocks, appended as leases change; a block is
/// active when its `binding state` is `active` and it `ends` after `now_secs`.
pub fn parse_dhcpd_leases(text: &str, now_secs: u64) -> Result<Parsed, String> {
    let mut last = BTreeMap::new();
    let mut current: Option<(Ipv4Addr, usize)> = None;
    let (mut ends, mut state, mut mac, mut uid, mut hostname) = (None, None, None, None, None);
    for (number, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let problem = |what: &str| format!("line {}: {what}: {raw}", number + 1);
        let Some((at, _)) = current else {
            if let Some(rest) = line.strip_prefix("lease ") {
                let ip = rest.trim_end_matches('{').trim();
                let ip: Ipv4Addr = ip.parse().map_err(|_| problem("not an IPv4 lease"))?;
                current = Some((ip, number + 1));
                (ends, state, mac, uid, hostname) = (None, None, None, None, None);
            }
            // Anything else outside a lease block (server-duid, authoring-byte-order, host, ...) is not a lease.
            continue;
        };
        if line == "}" {
            let active = state.as_deref() == Some("active") && ends.is_some_and(|e: u64| e > now_secs);
            let lease = match (active, mac.take()) {
                (true, Some(mac)) => Some(ImportedLease {
                    ip: at,
                    mac,
                    client_id: uid.take(),
                    expires_at: ends.unwrap_or(0).min(u64::from(u32::MAX)),
                    hostname: hostname.take(),
                }),
                _ => None,
            };
            last.insert(at, lease);
            current = None;
            continue;
        }
        let statement = line.trim_end_matches(';').trim();
        let words: Vec<&str> = statement.split_whitespace().collect();
        match words.as_slice() {
            ["ends", time @ ..] => ends = Some(dhcpd_time(time).ok_or_else(|| problem("a time dhcpd does not write"))?),
            ["binding", "state", value] => state = Some(value.to_string()),
            ["hardware", "ethernet", value] => mac = Some(value.to_ascii_lowercase()),
            ["uid", ..] => uid = dhcpd_uid(statement["uid".len()..].trim()),
            ["client-hostname", ..] => {
                hostname = Some(statement["client-hostname".len()..].trim().trim_matches('"').to_string())
            }
            _ => {}
        }
    }
    if let Some((ip, started)) = current {
        return Err(format!("line {started}: the block of lease {ip} does not end"));
    }
    Ok(finish(last))
}

/// One bound lease as `GET /v1/leases` gives it.
pub struct Bound {
    pub ip: String,
    pub mac: String,
    pub client_id: Option<String>,
    pub hostname: Option<String>,
    pub expires_at: u64,
}

/// Kea memfile CSV of `leases` (all in `subnet_id`), loadable by kea-dhcp4 (`lease-file` in its
/// memfile lease database) and by `leasehold import --kea-csv`.
pub fn write_kea_csv(leases: &[Bound], subnet_id: u32, now_secs: u64) -> String {
    let mut out = String::from(
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n",
    );
    for lease in leases {
        let valid = lease.expires_at.saturating_sub(now_secs).max(1);
        let hostname = lease.hostname.as_deref().unwrap_or("").replace(',', "&#x2c");
        out.push_str(&format!(
            "{},{},{},{valid},{},{subnet_id},0,0,{hostname},0,\n",
            lease.ip,
            lease.mac,
            lease.client_id.as_deref().unwrap_or(""),
            lease.expires_at
        ));
    }
    out
}

/// dhcpd.leases blocks of `leases`, loadable by ISC dhcpd and by `leasehold import --dhcpd-leases`.
pub fn write_dhcpd_leases(leases: &[Bound], now_secs: u64) -> String {
    let mut out = String::from("# Written by leasehold export.\nauthoring-byte-order little-endian;\n\n");
    for lease in leases {
        out.push_str(&format!(
            "lease {} {{\n  starts epoch {now_secs};\n  ends epoch {};\n",
            lease.ip, lease.expires_at
        ));
        out.push_str("  binding state active;\n  next binding state free;\n");
        out.push_str(&format!("  hardware ethernet {};\n", lease.mac));
        if let Some(id) = &lease.client_id {
            out.push_str(&format!("  uid {id};\n"));
        }
        if let Some(name) = &lease.hostname {
            let name: String = name.chars().filter(|c| *c != '"' && *c != '\\').collect();
            out.push_str(&format!("  client-hostname \"{name}\";\n"));
        }
        out.push_str("}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_765_000_000;

    #[test]
    fn kea_csv_keeps_the_last_row_of_each_address_and_only_active_ones() {
        let text = format!(
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context\n\
             10.0.0.5,52:54:00:00:00:01,01:52:54:00:00:00:01,3600,{e},1,0,0,web&#x2c1,0,\n\
             10.0.0.6,52:54:00:00:00:02,,3600,{e},1,0,0,,0,\n\
             10.0.0.6,52:54:00:00:00:02,,0,{e},1,0,0,,0,\n\
             10.0.0.7,52:54:00:00:00:03,,3600,{e},1,0,0,,1,\n\
             10.0.0.8,52:54:00:00:00:04,,3600,{past},1,0,0,,0,\n",
            e = NOW + 600,
            past = NOW - 1
        );
        let parsed = parse_kea_csv(&text, NOW).expect("parses");
        assert_eq!(parsed.inactive, 3, "deleted (lifetime 0), declined (state 1) and ended");
        assert_eq!(
            parsed.active,
            vec![ImportedLease {
                ip: Ipv4Addr::new(10, 0, 0, 5),
                mac: "52:54:00:00:00:01".into(),
                client_id: Some("01:52:54:00:00:00:01".into()),
                expires_at: NOW + 600,
                hostname: Some("web,1".into()),
            }]
        );
        assert!(parse_kea_csv("address,hwaddr\n", NOW).unwrap_err().contains("client_id"));
        let bad = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,hostname,state\nnope,,,,,,,\n";
        assert!(parse_kea_csv(bad, NOW).unwrap_err().starts_with("line 2"));
    }

    #[test]
    fn dhcpd_leases_reads_dates_epochs_uids_and_the_last_block_wins() {
        let text = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
authoring-byte-order little-endian;
server-duid "\000\001\000\001";

lease 10.0.0.5 {
  starts 6 2025/12/06 05:46:40;
  ends 6 2025/12/06 06:16:40;
  cltt 6 2025/12/06 05:46:40;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 52:54:00:AA:00:01;
  uid "\001RT\000\252\000\001";
  client-hostname "pxe-01";
}
lease 10.0.0.6 {
  ends epoch 1765001000; # a time in epoch form
  binding state active;
  hardware ethernet 52:54:00:aa:00:02;
  uid 01:52:54:00:aa:00:02;
}
lease 10.0.0.6 {
  ends epoch 1765001000;
  binding state free;
  hardware ethernet 52:54:00:aa:00:02;
}
"#;
        let parsed = parse_dhcpd_leases(text, NOW).expect("parses");
        assert_eq!(parsed.inactive, 1, "10.0.0.6 was freed by its last block");
        assert_eq!(parsed.active.len(), 1);
        let lease = &parsed.active[0];
        // 2025-12-06 06:16:40 UTC.
        assert_eq!(lease.expires_at, 1_765_001_800);
        assert_eq!(lease.client_id.as_deref(), Some("01:52:54:00:aa:00:01"));
        assert_eq!((lease.mac.as_str(), lease.hostname.as_deref()), ("52:54:00:aa:00:01", Some("pxe-01")));
        assert!(parse_dhcpd_leases("lease 10.0.0.9 {\n  binding state active;\n", NOW).is_err());
    }

    #[test]
    fn exported_files_read_back_as_the_same_leases() {
        let leases = [Bound {
            ip: "10.0.0.5".into(),
            mac: "52:54:00:00:00:01".into(),
            client_id: Some("01:52:54:00:00:00:01".into()),
            hostname: Some("a,b".into()),
            expires_at: NOW + 900,
        }];
        let want = ImportedLease {
            ip: Ipv4Addr::new(10, 0, 0, 5),
            mac: "52:54:00:00:00:01".into(),
            client_id: Some("01:52:54:00:00:00:01".into()),
            expires_at: NOW + 900,
            hostname: Some("a,b".into()),
        };
        assert_eq!(parse_kea_csv(&write_kea_csv(&leases, 1, NOW), NOW).unwrap().active, vec![want.clone()]);
        assert_eq!(parse_dhcpd_leases(&write_dhcpd_leases(&leases, NOW), NOW).unwrap().active, vec![want]);
    }
}
