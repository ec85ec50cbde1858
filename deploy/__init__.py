"""The operations layer: local Kafka from Maven Central jars, topic and ACL provisioning, the
ACL plan and the Kubernetes (Strimzi) manifests, beside the files they deploy."""
