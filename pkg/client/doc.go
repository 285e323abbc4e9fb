// Package client is the Go client of Herald for devices, tests and the load generator.
//
// It has three layers, each usable alone:
//
//   - Login and MintToken ask auth for a Session: a token and the ws_url of the push-server auth
//     picked for the user.
//   - Dial opens one WebSocket connection to a push-server and exposes what the server says on it:
//     the welcome frame, pushes in order, error frames, and the close code it ended with. Tests of
//     the push-server use it directly, together with WriteRaw for deliberately bad input.
//   - Client keeps a connection up for as long as its context lives, the way a device app would: it
//     logs in, connects, reconnects with jittered exponential backoff, and logs in again whenever
//     the node it was on is going away or cannot be reached, so auth can pick a live one.
//
// Messages go upstream with Client.Send (or SendRef with a ref of the caller's own): it resends the
// same frame, with the same ref, until the server acks it, across reconnections if need be. The
// server derives the record id from the ref, so a resent message still reaches consumers once.
// Conn.SendRef is the single attempt underneath, for tests of the server.
//
// The client uses a reader goroutine and a heartbeat goroutine per connection: it holds a handful of
// connections, not a million, so clarity wins over the server's epoll design.
package client
