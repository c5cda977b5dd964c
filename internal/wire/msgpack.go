package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMsgpack is wrapped by CheckMsgpack's errors.
var ErrMsgpack = errors.New("malformed msgpack")

// MsgpackLimits bound what CheckMsgpack accepts; a zero field is no bound.
type MsgpackLimits struct {
	MaxElems int // elements of one array or map
	MaxDepth int // nesting of arrays and maps
}

// CheckMsgpack walks the first msgpack value in data without decoding it
// and returns its length in bytes. It refuses what would make a decoder
// allocate or recurse without bound: an array, map, string, binary or
// extension longer than the bytes that remain (each array element or map
// entry takes at least one byte), a container beyond lim.MaxElems, nesting
// deeper than lim.MaxDepth, a truncated value or the never-used code 0xc1.
// It allocates one int per open container level.
//
// msgpack v5.4.1 sizes a slice by its declared length before reading its
// elements (its own allocation limit does not work: a 6-byte value claiming
// 4 billion elements made it allocate about 1 TB), so bytes from outside go
// through this check before msgpack.Unmarshal.
func CheckMsgpack(data []byte, lim MsgpackLimits) (int, error) {
	stack := []int{1} // stack[i]: values still to read at depth i
	i := 0
	for len(stack) > 0 {
		if stack[len(stack)-1] == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		stack[len(stack)-1]--
		if i >= len(data) {
			return 0, errMsgpack("truncated", i)
		}
		c := data[i]
		i++
		var hdr, payload, elems int // header bytes, payload bytes, child values
		switch {
		case c <= 0x7f || c >= 0xe0: // fixint
		case c <= 0x8f: // fixmap
			elems = 2 * int(c&0x0f)
		case c <= 0x9f: // fixarray
			elems = int(c & 0x0f)
		case c <= 0xbf: // fixstr
			payload = int(c & 0x1f)
		case c == 0xc0 || c == 0xc2 || c == 0xc3: // nil, false, true
		case c == 0xc1:
			return 0, errMsgpack("code 0xc1", i-1)
		case c == 0xc4 || c == 0xd9: // bin8, str8
			hdr = 1
		case c == 0xc5 || c == 0xda: // bin16, str16
			hdr = 2
		case c == 0xc6 || c == 0xdb: // bin32, str32
			hdr = 4
		case c == 0xc7: // ext8: len, type
			hdr = 1
		case c == 0xc8: // ext16
			hdr = 2
		case c == 0xc9: // ext32
			hdr = 4
		case c == 0xca || c == 0xce || c == 0xd2: // float32, uint32, int32
			payload = 4
		case c == 0xcb || c == 0xcf || c == 0xd3: // float64, uint64, int64
			payload = 8
		case c == 0xcc || c == 0xd0: // uint8, int8
			payload = 1
		case c == 0xcd || c == 0xd1: // uint16, int16
			payload = 2
		case c >= 0xd4 && c <= 0xd8: // fixext 1, 2, 4, 8, 16 (+ type byte)
			payload = 1 + 1<<(c-0xd4)
		case c == 0xdc || c == 0xde: // array16, map16
			hdr = 2
		case c == 0xdd || c == 0xdf: // array32, map32
			hdr = 4
		}
		if hdr > 0 {
			if len(data)-i < hdr {
				return 0, errMsgpack("truncated header", i)
			}
			var n uint64
			switch hdr {
			case 1:
				n = uint64(data[i])
			case 2:
				n = uint64(binary.BigEndian.Uint16(data[i:]))
			case 4:
				n = uint64(binary.BigEndian.Uint32(data[i:]))
			}
			i += hdr
			if n > uint64(len(data)) {
				return 0, errMsgpack("length beyond the data", i)
			}
			container := c == 0xdc || c == 0xdd || c == 0xde || c == 0xdf
			if container && lim.MaxElems > 0 && n > uint64(lim.MaxElems) {
				return 0, errMsgpack(fmt.Sprintf("container of %d elements", n), i)
			}
			switch c {
			case 0xdc, 0xdd:
				elems = int(n)
			case 0xde, 0xdf:
				elems = 2 * int(n)
			case 0xc7, 0xc8, 0xc9:
				payload = int(n) + 1
			default:
				payload = int(n)
			}
		}
		if payload > len(data)-i {
			return 0, errMsgpack("value beyond the data", i)
		}
		i += payload
		if elems > 0 {
			if elems > len(data)-i {
				return 0, errMsgpack(fmt.Sprintf("container of %d values", elems), i)
			}
			if lim.MaxDepth > 0 && len(stack) >= lim.MaxDepth {
				return 0, errMsgpack("nested too deep", i)
			}
			stack = append(stack, elems)
		}
	}
	return i, nil
}

func errMsgpack(why string, at int) error {
	return fmt.Errorf("%w: %s at byte %d", ErrMsgpack, why, at)
}
