package gcr

// Scratch is memory lent to the Txns of one owner that runs them one at a
// time (a partition's apply: Projection.BeginScratch), so that the buffers
// a Txn would allocate for itself live from one Txn to the next (store
// Writers copy values). The zero value is ready; a Scratch must not be
// used by two Txns at once.
type Scratch struct {
	rec  []byte   // an event record's encoding
	keys []string // scratch for sorting its map keys
	enc  []byte   // a profile's encoding
}
