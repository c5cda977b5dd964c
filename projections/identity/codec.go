package identity

import (
	"encoding/binary"
	"fmt"

	"github.com/aurumcdp/aurum/internal/wire"
)

// The stored form of a keychain node (key ip/<profile>).
//
// Version 1, hand-written (no reflection), deterministic (equal nodes give
// equal bytes; the slices are written in their order, which the keychain
// keeps sorted):
//
//	node  = 0xc1 bytes(Redirect) uvarint(n) (str(Type) bytes(Hash))*n uvarint(n) bytes*(MergedFrom)
//	str   = uvarint(len) bytes;  bytes = uvarint(len) bytes (length 0 decodes as nil)
//
// The leading byte is the version: 0xc1 (a code msgpack never uses, from
// when msgpack nodes of earlier builds were still read; they are not any
// more). A later version takes another leading byte.
//
// Decoding checks every count against the bytes left before it allocates,
// so hostile input allocates at most a small multiple of its length, and
// refuses trailing bytes.
const nodeV1 byte = 0xc1

// Minimum encoded sizes of the repeated items of a node.
const (
	minNodeIDSize = 2 // 2 lengths
	minMergedSize = 1 // 1 length
)

func encodeNode(n *node) []byte {
	const v = binary.MaxVarintLen64
	size := 1 + 3*v + len(n.Redirect)
	for i := range n.IDs {
		size += 2*v + len(n.IDs[i].Type) + len(n.IDs[i].Hash)
	}
	for _, m := range n.MergedFrom {
		size += v + len(m)
	}
	b := make([]byte, 0, size)
	b = append(b, nodeV1)
	b = wire.AppendBytes(b, n.Redirect)
	b = binary.AppendUvarint(b, uint64(len(n.IDs)))
	for i := range n.IDs {
		b = wire.AppendString(b, n.IDs[i].Type)
		b = wire.AppendBytes(b, n.IDs[i].Hash)
	}
	b = binary.AppendUvarint(b, uint64(len(n.MergedFrom)))
	for _, m := range n.MergedFrom {
		b = wire.AppendBytes(b, m)
	}
	return b
}

// decodeNode decodes a stored node. Errors wrap ErrCorrupt.
func decodeNode(b []byte) (*node, error) {
	n := new(node)
	if len(b) == 0 || b[0] != nodeV1 {
		return nil, fmt.Errorf("%w: not a node of version %d", ErrCorrupt, nodeV1)
	}
	d := wire.NewReader(b[1:], ErrCorrupt)
	n.Redirect = d.Bytes("redirect")
	if c := d.Count("id count", minNodeIDSize); c > 0 {
		n.IDs = make([]nodeID, c)
		for i := range n.IDs {
			n.IDs[i].Type = d.String("id type")
			n.IDs[i].Hash = d.Bytes("id hash")
		}
	}
	if c := d.Count("merged count", minMergedSize); c > 0 {
		n.MergedFrom = make([][]byte, c)
		for i := range n.MergedFrom {
			n.MergedFrom[i] = d.Bytes("merged id")
		}
	}
	if err := d.Finish(); err != nil {
		return nil, err
	}
	return n, nil
}
