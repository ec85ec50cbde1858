"""``enlace demo``: the whole exchange of the registry's agencies on one Kafka, with a story."""
