//! A small DER writer for the edge-case seeds: every element is built from its parts, so that
//! a seed can hold what no certificate library writes (a v1 or v2 certificate, a negative
//! serial, a GeneralizedTime before 2050, a duplicated extension, …).

/// A definite length, short or long form.
fn length(n: usize) -> Vec<u8> {
    if n < 0x80 {
        return vec![n as u8];
    }
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    let mut out = vec![0x80 | (bytes.len() - skip) as u8];
    out.extend_from_slice(&bytes[skip..]);
    out
}

/// `tag length body`.
pub fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend(length(body.len()));
    out.extend_from_slice(body);
    out
}

/// A constructed element from its (already encoded) parts.
pub fn cons(tag: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(tag, &parts.concat())
}

pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    cons(0x30, parts)
}

/// A SET OF, its elements sorted as DER wants them.
pub fn set(parts: &[Vec<u8>]) -> Vec<u8> {
    let mut sorted = parts.to_vec();
    sorted.sort();
    cons(0x31, &sorted)
}

/// An OBJECT IDENTIFIER's contents.
pub fn oid_body(arcs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut push = |mut v: u64| {
        let mut digits = vec![(v & 0x7f) as u8];
        v >>= 7;
        while v > 0 {
            digits.push(0x80 | (v & 0x7f) as u8);
            v >>= 7;
        }
        digits.reverse();
        out.extend(digits);
    };
    push(arcs[0] * 40 + arcs[1]);
    for arc in &arcs[2..] {
        push(*arc);
    }
    out
}

pub fn oid(arcs: &[u64]) -> Vec<u8> {
    tlv(0x06, &oid_body(arcs))
}

/// An INTEGER with exactly these content octets (not normalised: a seed may want them wrong).
pub fn int(content: &[u8]) -> Vec<u8> {
    tlv(0x02, content)
}

/// A non-negative INTEGER, minimally encoded.
pub fn uint(n: u64) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    let mut content = bytes[skip..].to_vec();
    if content[0] & 0x80 != 0 {
        content.insert(0, 0);
    }
    int(&content)
}

pub fn boolean(value: bool) -> Vec<u8> {
    tlv(0x01, &[if value { 0xff } else { 0x00 }])
}

pub fn octets(body: &[u8]) -> Vec<u8> {
    tlv(0x04, body)
}

/// A BIT STRING with no unused bits.
pub fn bits(body: &[u8]) -> Vec<u8> {
    let mut content = vec![0];
    content.extend_from_slice(body);
    tlv(0x03, &content)
}

/// A BIT STRING with `unused` unused bits in its last octet.
pub fn bits_unused(unused: u8, body: &[u8]) -> Vec<u8> {
    let mut content = vec![unused];
    content.extend_from_slice(body);
    tlv(0x03, &content)
}

pub fn utc(text: &str) -> Vec<u8> {
    tlv(0x17, text.as_bytes())
}

pub fn gen_time(text: &str) -> Vec<u8> {
    tlv(0x18, text.as_bytes())
}

/// Context-specific tag `n`, primitive (IMPLICIT of a primitive type).
pub fn ctx(n: u8, body: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, body)
}

/// Context-specific tag `n`, constructed (EXPLICIT, or IMPLICIT of a constructed type).
pub fn ctx_cons(n: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    cons(0xa0 | n, parts)
}

/// `Extension ::= SEQUENCE { extnID, critical DEFAULT FALSE, extnValue OCTET STRING }`.
pub fn ext(arcs: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(arcs)];
    if critical {
        parts.push(boolean(true));
    }
    parts.push(octets(value));
    seq(&parts)
}

/// `AttributeTypeAndValue` with a string (or any) value of tag `tag`.
pub fn atv(arcs: &[u64], tag: u8, value: &[u8]) -> Vec<u8> {
    seq(&[oid(arcs), tlv(tag, value)])
}

/// A Name from RDNs, each a SET of AttributeTypeAndValues.
pub fn name(rdns: &[Vec<Vec<u8>>]) -> Vec<u8> {
    seq(&rdns.iter().map(|atvs| set(atvs)).collect::<Vec<_>>())
}

/// A Name of single-valued RDNs.
pub fn name1(atvs: &[Vec<u8>]) -> Vec<u8> {
    name(&atvs.iter().map(|a| vec![a.clone()]).collect::<Vec<_>>())
}

pub fn bmp(text: &str) -> Vec<u8> {
    text.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

pub fn universal(text: &str) -> Vec<u8> {
    text.chars()
        .flat_map(|c| (c as u32).to_be_bytes())
        .collect()
}

/// The first element of `der`: (tag, contents, whole, rest).
pub fn read(der: &[u8]) -> Option<(u8, &[u8], &[u8], &[u8])> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, head) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        let mut len = 0usize;
        for b in der.get(2..2 + n)? {
            len = len.checked_mul(256)? + *b as usize;
        }
        (len, 2 + n)
    };
    let end = head.checked_add(len)?;
    let contents = der.get(head..end)?;
    Some((tag, contents, &der[..end], &der[end..]))
}

/// The extnValue contents of the first extension `arcs` in a certificate or CRL.
pub fn find_extension(der: &[u8], arcs: &[u64]) -> Option<Vec<u8>> {
    let needle = oid(arcs);
    let at = der.windows(needle.len()).position(|w| w == needle)?;
    let mut rest = &der[at + needle.len()..];
    if rest.first() == Some(&0x01) {
        rest = read(rest)?.3;
    }
    Some(read(rest)?.1.to_vec())
}

/// Standard base64, for PEM.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A PEM block, 64 columns.
pub fn pem(label: &str, der: &[u8]) -> String {
    let body = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}
