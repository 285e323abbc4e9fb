package routes

import (
	"hash/fnv"
	"strconv"
)

// keyPrefix namespaces every key Herald writes, so Herald can share a Redis with other programs.
const keyPrefix = "herald:"

// routeKey names the hash of a uid's connections. The uid is the hash tag, so each uid's routes sit in
// one slot of Redis Cluster and uids spread over all slots.
func routeKey(uid string) string {
	return keyPrefix + "route:{" + uid + "}"
}

// nodeIndexShards is how many keys a node's uid index is split into. Each has its own hash tag, so on
// Redis Cluster one node's index spreads over the masters instead of loading one of them with every
// connect of the node, and a master's failure costs the index only the uids of its shards. A uid's
// shard is fixed by indexShard; changing either breaks the removal of uids indexed by older versions.
const nodeIndexShards = 16

// nodeUIDsKey names shard k of the set of uids a node holds connections of, which is what lets a dead
// node's routes be found without scanning every route hash.
func nodeUIDsKey(node string, k int) string {
	return keyPrefix + "node:{" + node + ":" + strconv.Itoa(k) + "}:uids"
}

// legacyNodeUIDsKey names the unsharded index of Herald 0.1, still read by sweeps so a node that ran
// that version is swept completely.
func legacyNodeUIDsKey(node string) string {
	return keyPrefix + "node:{" + node + "}:uids"
}

// indexShard is the shard of node's index that holds uid (FNV-1a, stable across versions).
func indexShard(uid string) int {
	h := fnv.New32a()
	h.Write([]byte(uid))
	return int(h.Sum32() % nodeIndexShards)
}

// indexKeyOf names the index key that holds uid for node.
func indexKeyOf(node, uid string) string {
	return nodeUIDsKey(node, indexShard(uid))
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
