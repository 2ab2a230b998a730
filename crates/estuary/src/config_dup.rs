//! ST 2022-7 transmit: an AES67 output's second path,
//! `redundant = { address = "239.69.2.1:5004", interface = "eth1" }`.

use std::net::SocketAddr;

use super::{FieldError, OutputConfig};

/// The second path of a redundant AES67 output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecondLeg {
    pub address: SocketAddr,
    /// Interface name or address; `None` lets the routing table decide.
    pub interface: Option<String>,
}

impl OutputConfig {
    /// The output's second path, when `redundant` is set; an error names the field.
    pub fn redundant_leg(&self) -> Result<Option<SecondLeg>, FieldError> {
        let Some(table) = &self.redundant else {
            return Ok(None);
        };
        let span = table.span();
        let dup = table.get_ref();
        if dup.source.is_some() {
            return Err((
                span,
                "redundant.source".into(),
                "a source filter is a receiver's setting; an output sends from its interface"
                    .into(),
            ));
        }
        let Some(address) = &dup.address else {
            return Err((
                span,
                "redundant.address".into(),
                "missing: the second path's destination (ip:port)".into(),
            ));
        };
        let second = *address.get_ref();
        if second.is_ipv4() != self.address.is_ipv4() {
            return Err((
                address.span(),
                "redundant.address".into(),
                format!(
                    "{second} and the first path's {} are not of the same IP version",
                    self.address
                ),
            ));
        }
        let interface = dup.interface.as_ref().map(|i| i.get_ref().clone());
        if second == self.address && interface.is_none() {
            return Err((
                address.span(),
                "redundant.address".into(),
                "the second path goes to the same address as the first; give another \
                 address or an `interface`"
                    .into(),
            ));
        }
        Ok(Some(SecondLeg {
            address: second,
            interface,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{ConfigError, parse};

    const GEN: &str = "[[inputs]]\nname = \"gen\"\nkind = \"generator\"\nchannels = 2\n\n";

    fn output(kind_and_fields: &str) -> String {
        format!(
            "{GEN}[[outputs]]\nname = \"tx\"\ninput = \"gen\"\n\
             address = \"239.69.9.1:5004\"\n{kind_and_fields}"
        )
    }

    fn error(text: &str) -> ConfigError {
        parse(text, Path::new(".")).expect_err("must be refused")
    }

    #[test]
    fn a_second_path_is_read() {
        let config = parse(
            &output(
                "kind = \"aes67\"\nredundant = { address = \"239.69.9.2:5006\", interface = \"lo\" }\n",
            ),
            Path::new("."),
        )
        .expect("valid");
        let leg = config.outputs[0].redundant_leg().expect("valid leg");
        assert_eq!(
            leg,
            Some(super::SecondLeg {
                address: "239.69.9.2:5006".parse().expect("addr"),
                interface: Some("lo".into()),
            })
        );
    }

    #[test]
    fn mistakes_name_the_field_and_line() {
        let e = error(&output(
            "kind = \"aes67\"\nredundant = { interface = \"lo\" }\n",
        ));
        assert_eq!(e.field, "outputs[0].redundant.address");
        assert_eq!(e.line, Some(11));
        let e = error(&output(
            "kind = \"aes67\"\nredundant = { address = \"239.69.9.2:5004\", source = \"10.0.0.1\" }\n",
        ));
        assert_eq!(e.field, "outputs[0].redundant.source");
        let e = error(&output(
            "kind = \"aes67\"\nredundant = { address = \"[ff02::1]:5004\" }\n",
        ));
        assert_eq!(e.field, "outputs[0].redundant.address");
        let e = error(&output(
            "kind = \"aes67\"\nredundant = { address = \"239.69.9.1:5004\" }\n",
        ));
        assert!(e.message.contains("same address"), "{}", e.message);
        let e = error(&output(
            "kind = \"srt\"\nmode = \"caller\"\ncodec = \"pcm\"\n\
             redundant = { address = \"239.69.9.2:5004\" }\n",
        ));
        assert_eq!(e.field, "outputs[0].redundant");
    }
}
