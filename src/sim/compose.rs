//! Compose files as the CT mini-OS reads them: `.env` parsing, `${VAR}` interpolation, and
//! the services with their published ports. Pure.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::state::ComposeService;

/// Parse a `.env` file (`KEY=value`, `#` comments, optional quotes).
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim();
            let v = if v.len() >= 2 && ((v.starts_with('"') && v.ends_with('"')) || (v.starts_with('\'') && v.ends_with('\''))) {
                &v[1..v.len() - 1]
            } else {
                v
            };
            out.insert(k.trim().to_string(), v.to_string());
        }
    }
    out
}

/// Interpolate `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?err}`, `$VAR` and `$$`.
pub fn interpolate(s: &str, env: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c != '$' {
            out.push(c);
            i += 1;
            continue;
        }
        match chars.get(i + 1) {
            Some('$') => {
                out.push('$');
                i += 2;
            }
            Some('{') => {
                let end = chars[i + 2..]
                    .iter()
                    .position(|&c| c == '}')
                    .ok_or("invalid interpolation format: missing '}'")?
                    + i
                    + 2;
                let inner: String = chars[i + 2..end].iter().collect();
                let (name, op, arg) = if let Some(p) = inner.find(":-") {
                    (&inner[..p], ":-", &inner[p + 2..])
                } else if let Some(p) = inner.find(":?") {
                    (&inner[..p], ":?", &inner[p + 2..])
                } else if let Some(p) = inner.find('-') {
                    (&inner[..p], "-", &inner[p + 1..])
                } else if let Some(p) = inner.find('?') {
                    (&inner[..p], "?", &inner[p + 1..])
                } else {
                    (inner.as_str(), "", "")
                };
                let val = env.get(name);
                let v = match op {
                    ":-" => val.filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| arg.to_string()),
                    "-" => val.cloned().unwrap_or_else(|| arg.to_string()),
                    ":?" | "?" => match val.filter(|v| op == "?" || !v.is_empty()) {
                        Some(v) => v.clone(),
                        None => return Err(format!("required variable {name} is missing a value: {arg}")),
                    },
                    _ => val.cloned().unwrap_or_default(),
                };
                out.push_str(&v);
                i = end + 1;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == '_' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    j += 1;
                }
                let name: String = chars[start..j].iter().collect();
                out.push_str(env.get(&name).map(String::as_str).unwrap_or(""));
                i = j;
            }
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

fn port_num(s: &str) -> Result<u16, String> {
    s.trim().parse::<u16>().map_err(|_| format!("invalid port '{s}'"))
}

/// A published port entry → (host ip, host port, container port); `None` when nothing is
/// published on a fixed host port (container-only ports, ranges' absence, UDP).
pub fn parse_port(v: &Value) -> Result<Option<(Option<String>, u16, u16)>, String> {
    match v {
        Value::Number(_) => Ok(None),
        Value::String(s) => {
            let (spec, proto) = s.split_once('/').unwrap_or((s.as_str(), "tcp"));
            if proto != "tcp" {
                return Ok(None);
            }
            // IPv6 host IPs come in brackets: "[::1]:8080:80".
            let parts: Vec<&str> = if let Some(rest) = spec.strip_prefix('[') {
                let (ip, rest) = rest.split_once(']').ok_or_else(|| format!("invalid port spec '{s}'"))?;
                let mut v = vec![ip];
                v.extend(rest.trim_start_matches(':').split(':'));
                v
            } else {
                spec.split(':').collect()
            };
            match parts.as_slice() {
                [_container] => Ok(None),
                [host, container] => Ok(Some((None, port_num(host)?, port_num(container)?))),
                [ip, host, container] if !host.is_empty() => Ok(Some((Some(ip.to_string()), port_num(host)?, port_num(container)?))),
                [_, _, _] => Ok(None),
                _ => Err(format!("invalid port spec '{s}'")),
            }
        }
        Value::Mapping(m) => {
            let get = |k: &str| m.get(Value::String(k.into()));
            if get("protocol").and_then(Value::as_str).is_some_and(|p| p != "tcp") {
                return Ok(None);
            }
            let num = |v: Option<&Value>| -> Result<Option<u16>, String> {
                match v {
                    None => Ok(None),
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .map(Some)
                        .ok_or_else(|| "invalid port".to_string()),
                    Some(Value::String(s)) => port_num(s).map(Some),
                    Some(_) => Err("invalid port".into()),
                }
            };
            let target = num(get("target"))?.ok_or("port mapping without target")?;
            Ok(num(get("published"))?.map(|p| (get("host_ip").and_then(Value::as_str).map(str::to_string), p, target)))
        }
        _ => Err("invalid port entry".into()),
    }
}

/// Parse a compose file (already interpolated) into its services, sorted by name.
pub fn parse_compose(text: &str) -> Result<Vec<ComposeService>, String> {
    let doc: Value = serde_yaml::from_str(text).map_err(|e| format!("yaml: {e}"))?;
    let services = doc
        .get("services")
        .and_then(Value::as_mapping)
        .ok_or("no service defined (missing 'services')")?;
    let mut out = Vec::new();
    for (name, svc) in services {
        let name = name.as_str().ok_or("service name must be a string")?.to_string();
        let image = svc.get("image").and_then(Value::as_str).map(str::to_string);
        let image = match (image, svc.get("build")) {
            (Some(i), _) => i,
            (None, Some(_)) => format!("{name}:latest"),
            (None, None) => {
                return Err(format!(
                    "service \"{name}\" has neither an image nor a build context specified: invalid compose project"
                ));
            }
        };
        let mut ports = Vec::new();
        if let Some(list) = svc.get("ports").and_then(Value::as_sequence) {
            for p in list {
                if let Some(x) = parse_port(p).map_err(|e| format!("service \"{name}\": {e}"))? {
                    ports.push(x);
                }
            }
        }
        out.push(ComposeService { name, image, ports });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_and_interpolation() {
        let env = parse_env("# c\nPORT=8081\nNAME=\"my app\"\nEMPTY=\n");
        assert_eq!(
            interpolate("${PORT}:80 $NAME $$x ${MISSING:-d} ${EMPTY:-e} ${EMPTY-f}", &env).unwrap(),
            "8081:80 my app $x d e "
        );
        assert!(interpolate("${NEED:?set it}", &env).is_err());
    }

    #[test]
    fn ports() {
        let s = |x: &str| Value::String(x.into());
        assert_eq!(parse_port(&s("8080:80")).unwrap(), Some((None, 8080, 80)));
        assert_eq!(
            parse_port(&s("127.0.0.1:8080:80")).unwrap(),
            Some((Some("127.0.0.1".into()), 8080, 80))
        );
        assert_eq!(parse_port(&s("8080:80/tcp")).unwrap(), Some((None, 8080, 80)));
        assert_eq!(parse_port(&s("53:53/udp")).unwrap(), None);
        assert_eq!(parse_port(&s("80")).unwrap(), None);
        assert!(parse_port(&s("abc:80")).is_err());
        let m: Value = serde_yaml::from_str("{target: 80, published: \"8088\"}").unwrap();
        assert_eq!(parse_port(&m).unwrap(), Some((None, 8088, 80)));
    }

    #[test]
    fn compose_services() {
        let y = "services:\n  web:\n    image: nginx:alpine\n    ports: [\"8080:80\"]\n  db:\n    image: postgres:16\n";
        let s = parse_compose(y).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].name, "web");
        assert_eq!(s[1].ports, vec![(None, 8080, 80)]);
        assert!(parse_compose("version: '3'\n").is_err());
        assert!(parse_compose("services:\n  x: {}\n").is_err());
    }
}
