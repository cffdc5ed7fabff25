-- A claim finds the oldest unsent event of each resource among the oldest unsent rows
-- (`store::outbox::CLAIM`, by `outbox_unsent`), not by looking up a resource's unsent
-- events: this index has no reader, and every write paid an entry in it.
drop index outbox_unsent_resource;
