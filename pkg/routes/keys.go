package routes

// keyPrefix namespaces every key Herald writes, so Herald can share a Redis with other programs.
const keyPrefix = "herald:"

// routeKey names the hash of a uid's connections. The uid is the hash tag, so each uid's routes sit in
// one slot of Redis Cluster and uids spread over all slots.
func routeKey(uid string) string {
	return keyPrefix + "route:{" + uid + "}"
}

// nodeUIDsKey names the set of uids a node holds connections of, which is what lets a dead node's
// routes be found without scanning every route hash.
func nodeUIDsKey(node string) string {
	return keyPrefix + "node:{" + node + "}:uids"
}

// pendingKey names a uid's pending marker: set while the user may have pending offline messages. It
// shares the route hash's tag, so registering a connection reads it in the same script.
func pendingKey(uid string) string {
	return keyPrefix + "pending:{" + uid + "}"
}

// syncedKey names a node's mark that all its routes are recorded (mark_synced.lua). It shares the
// node's hash tag with its uid index.
func syncedKey(node string) string {
	return keyPrefix + "node:{" + node + "}:synced"
}
