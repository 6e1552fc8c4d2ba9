//! The kinds and their fields: which changes are in place and which force a replacement.

use tend_provider::{FieldSchema, FieldType, KindSchema};

fn tags() -> FieldSchema {
    FieldSchema::input("tags", FieldType::Map(Box::new(FieldType::String)), "tags (tend adds tend:managed-by and tend:address)")
}

fn strings() -> FieldType {
    FieldType::List(Box::new(FieldType::String))
}

/// All kinds of the provider.
pub fn schemas() -> Vec<KindSchema> {
    vec![
        KindSchema {
            kind: "vpc",
            doc: "a VPC",
            target: false,
            timeout: None,
            fields: vec![
                FieldSchema::input("cidr_block", FieldType::String, "IPv4 CIDR, e.g. 10.0.0.0/16").required().forces_replacement(),
                tags(),
                FieldSchema::output("id", FieldType::String, "vpc-…"),
            ],
        },
        KindSchema {
            kind: "subnet",
            doc: "a subnet of a VPC",
            target: false,
            timeout: None,
            fields: vec![
                FieldSchema::input("vpc_id", FieldType::String, "the VPC").required().forces_replacement(),
                FieldSchema::input("cidr_block", FieldType::String, "IPv4 CIDR inside the VPC's").required().forces_replacement(),
                FieldSchema::input("availability_zone", FieldType::String, "e.g. us-east-1a").forces_replacement(),
                tags(),
                FieldSchema::output("id", FieldType::String, "subnet-…"),
            ],
        },
        KindSchema {
            kind: "security_group",
            doc: "a security group with its ingress and egress rules",
            target: false,
            timeout: None,
            fields: vec![
                FieldSchema::input("name", FieldType::String, "group name").required().forces_replacement(),
                FieldSchema::input("description", FieldType::String, "description").forces_replacement(),
                FieldSchema::input("vpc_id", FieldType::String, "the VPC").forces_replacement(),
                FieldSchema::input(
                    "ingress",
                    FieldType::List(Box::new(FieldType::Any)),
                    "rules: { protocol = \"tcp\", from_port = 22, to_port = 22, cidr_blocks = [\"0.0.0.0/0\"] }",
                ),
                FieldSchema::input("egress", FieldType::List(Box::new(FieldType::Any)), "rules, as for ingress"),
                tags(),
                FieldSchema::output("id", FieldType::String, "sg-…"),
            ],
        },
        KindSchema {
            kind: "key_pair",
            doc: "an imported public key",
            target: false,
            timeout: None,
            fields: vec![
                FieldSchema::input("name", FieldType::String, "key pair name").required().forces_replacement(),
                FieldSchema::input("public_key", FieldType::String, "OpenSSH public key, e.g. \"ssh-ed25519 AAAA…\"").required().forces_replacement(),
                tags(),
                FieldSchema::output("id", FieldType::String, "key-…"),
                FieldSchema::output("fingerprint", FieldType::String, "the key's fingerprint as EC2 reports it"),
            ],
        },
        KindSchema {
            kind: "instance",
            doc: "a virtual machine",
            target: false,
            timeout: None,
            fields: vec![
                FieldSchema::input("ami", FieldType::String, "image id").required().forces_replacement(),
                FieldSchema::input("instance_type", FieldType::String, "e.g. t3.micro; changed in place by stop, modify, start").required(),
                FieldSchema::input("subnet_id", FieldType::String, "the subnet").forces_replacement(),
                FieldSchema::input("security_group_ids", strings(), "security groups, changed in place"),
                FieldSchema::input("key_name", FieldType::String, "key pair name").forces_replacement(),
                FieldSchema::input("user_data", FieldType::String, "cloud-init user data").forces_replacement(),
                FieldSchema::input("root_volume_size", FieldType::Int, "GiB of the root volume").forces_replacement(),
                FieldSchema::input("disable_api_termination", FieldType::Bool, "termination protection, changed in place"),
                FieldSchema::input(
                    "health",
                    FieldType::Map(Box::new(FieldType::Any)),
                    "checked before the instance counts as created: { tcp = 22, command = \"…\", address = \"private\", timeout = \"5m\" }",
                ),
                tags(),
                FieldSchema::output("id", FieldType::String, "i-…"),
                FieldSchema::output("private_ip", FieldType::String, "private IPv4 address"),
                FieldSchema::output("public_ip", FieldType::String, "public IPv4 address, if any"),
                FieldSchema::output("public_dns", FieldType::String, "public DNS name, if any"),
                FieldSchema::output("state", FieldType::String, "running, stopped, …"),
            ],
        },
    ]
}
