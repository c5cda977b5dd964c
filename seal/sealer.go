package seal

import (
	"crypto/cipher"
	"crypto/rand"
	"fmt"
)

// nonceBatch is how many nonces a Sealer draws from crypto/rand in one read.
const nonceBatch = 128

// arenaChunk is the size of a Sealer's arena chunk: below the runtime's
// large-object size (32 KiB), whose allocations cost more than many small ones.
const arenaChunk = 16 << 10

// Sealer hashes identifiers and seals values for one batch of records, with
// the costs of Keyring.Hash and Keyring.Seal amortised over the batch: one
// hasher for the batch, the cipher of the last key id kept (so that the
// values of one record look their key up once), nonces drawn from
// crypto/rand nonceBatch at a time, and outputs appended into shared arenas
// instead of one allocation each.
//
// Its outputs are those of Keyring.Hash and Keyring.Seal: the same keyed
// hashes, and the same format of sealed values (version || random 96-bit
// nonce || ciphertext || tag). Every nonce is read from crypto/rand and handed
// out once: unused buffered nonces are wiped by Close and never reused.
//
// A Sealer is owned by one goroutine (it is not safe for concurrent use) and
// lives for one batch: a key destroyed while it is in use may still seal the
// values of the record being sealed, as with concurrent Seal and Destroy.
type Sealer struct {
	k      *Keyring
	h      *hasher
	nonces [nonceBatch * nonceLen]byte
	next   int // nonces[next:] are unused; next == len(nonces) when empty

	lastID   keyID
	lastAEAD cipher.AEAD // nil: no key cached

	// keys holds the ciphers Ensure resolved for this batch (nil: the key
	// is destroyed), so that sealing under them takes no lock and no cache
	// look-up.
	keys map[keyID]cipher.AEAD

	hashes []byte // arena of Hash outputs
	sealed []byte // arena of Seal outputs
	// arenas are the sealed arenas of arenaChunk bytes taken from the
	// keyring's pool (Release returns them).
	arenas []*[]byte
}

// NewSealer returns a Sealer for one batch. sizeHint is the expected total
// size of the sealed values (0 if unknown); it sizes the first arena.
func (k *Keyring) NewSealer(sizeHint int) *Sealer {
	s := &Sealer{k: k, h: k.hashers.Get().(*hasher)}
	s.next = len(s.nonces)
	if sizeHint > 0 {
		s.sealed = s.arena(min(sizeHint, arenaChunk))
	}
	return s
}

// arena returns an empty sealed-value arena of at least n bytes: a pooled
// one of arenaChunk bytes when n fits.
func (s *Sealer) arena(n int) []byte {
	if n > arenaChunk {
		return make([]byte, 0, n)
	}
	a, _ := s.k.arenas.Get().(*[]byte)
	if a == nil {
		b := make([]byte, 0, arenaChunk)
		a = &b
	}
	s.arenas = append(s.arenas, a)
	return (*a)[:0]
}

// Release is Close, and also returns the Sealer's arenas to the keyring
// for the next Sealers: the outputs of Seal are invalid afterwards (their
// bytes will be overwritten). For a caller that has copied them (the
// ingest edge, into encoded records).
func (s *Sealer) Release() {
	s.Close()
	for _, a := range s.arenas {
		s.k.arenas.Put(a)
	}
	s.arenas, s.sealed = nil, nil
}

// Close returns the Sealer's hasher to the keyring and wipes its unused
// nonces. The outputs of Hash and Seal stay valid. The Sealer must not be
// used after Close.
func (s *Sealer) Close() {
	if s.h != nil && cap(s.h.buf) <= 4096 {
		s.k.hashers.Put(s.h)
	}
	s.h = nil
	clear(s.nonces[:])
	s.next = len(s.nonces)
	s.lastAEAD = nil
	s.keys = nil
}

// Ensure is Keyring.Ensure of keyIDs, and keeps the cipher of each for
// this Sealer's Seal calls: one cache look-up per distinct id of the batch
// (Keyring.Ensure and a Seal per value would look each id up again). A key
// destroyed after Ensure may then still seal values of this batch, as with
// a Seal concurrent with Destroy: the values are as unreadable as the
// rest of the key's data.
func (s *Sealer) Ensure(keyIDs [][]byte) error {
	if s.keys == nil {
		s.keys = make(map[keyID]cipher.AEAD, len(keyIDs))
	}
	var missing []keyID
	for _, raw := range keyIDs {
		id, err := toID(raw)
		if err != nil {
			return fmt.Errorf("seal: ensure: %w", err)
		}
		if _, ok := s.keys[id]; ok {
			continue
		}
		if a, ok := s.k.cache.get(&id); ok {
			s.keys[id] = a
			continue
		}
		s.keys[id] = nil // for the duplicates of id in keyIDs; set below
		missing = append(missing, id)
	}
	for i := range missing {
		delete(s.keys, missing[i])
	}
	return s.k.ensureMissing(missing, func(id *keyID, a cipher.AEAD) { s.keys[*id] = a })
}

// Hash returns Keyring.Hash(typ, value). The result is a capped slice of an
// arena: appending to it does not overwrite other results.
func (s *Sealer) Hash(typ, value string) []byte {
	hs := s.h
	hs.buf = append(append(append(hs.buf[:0], typ...), ':'), value...)
	hs.h.Reset()
	hs.h.Write(hs.buf)
	sum := hs.h.Sum(hs.sum[:0])
	if cap(s.hashes)-len(s.hashes) < hashLen {
		s.hashes = make([]byte, 0, 64*hashLen)
	}
	start := len(s.hashes)
	s.hashes = append(s.hashes, sum[:hashLen]...)
	return s.hashes[start:len(s.hashes):len(s.hashes)]
}

// Seal returns what Keyring.Seal(keyID, plaintext) returns (with another
// random nonce). The result is a capped slice of an arena.
func (s *Sealer) Seal(keyID, plaintext []byte) ([]byte, error) {
	aead, err := s.aead(keyID)
	if err != nil {
		return nil, err
	}
	n := len(plaintext) + sealedExtra
	if cap(s.sealed)-len(s.sealed) < n {
		s.sealed = s.arena(n)
	}
	start := len(s.sealed)
	out := append(s.sealed, version)
	out = append(out, s.nonce()...)
	nonce := out[start+1 : start+1+nonceLen]
	out = aead.Seal(out, nonce, plaintext, keyID) // in place: the arena has room
	s.sealed = out
	return out[start:len(out):len(out)], nil
}

// nonce returns the next unused 12 bytes of the buffer, refilling it from
// crypto/rand when it is empty. The returned bytes must be copied before the
// next call.
func (s *Sealer) nonce() []byte {
	if s.next == len(s.nonces) {
		rand.Read(s.nonces[:]) // never fails (crypto/rand: Read crashes the program on failure)
		s.next = 0
	}
	n := s.nonces[s.next : s.next+nonceLen]
	s.next += nonceLen
	return n
}

// aead returns the cipher of keyID, from the Sealer when it is the last key
// used, else from the keyring (cache or database).
func (s *Sealer) aead(raw []byte) (cipher.AEAD, error) {
	if s.lastAEAD != nil && len(raw) == idLen && keyID(raw) == s.lastID {
		return s.lastAEAD, nil
	}
	if len(raw) == idLen {
		if a, ok := s.keys[keyID(raw)]; ok {
			if a == nil {
				return nil, fmt.Errorf("%w: %x", ErrKeyDestroyed, raw)
			}
			s.lastID, s.lastAEAD = keyID(raw), a
			return a, nil
		}
	}
	a, err := s.k.aead(raw)
	if err != nil {
		return nil, err
	}
	s.lastID, s.lastAEAD = keyID(raw), a
	return a, nil
}
