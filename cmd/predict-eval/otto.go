package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/aurumcdp/aurum/predict/recommend"
)

// readOtto parses OTTO's JSON Lines: one session (a user) per line with its
// events {aid, ts (Unix ms), type clicks|carts|orders}. OTTO has no
// categories.
func readOtto(r io.Reader) ([][]recommend.Interaction, error) {
	kinds := map[string]recommend.Kind{"clicks": recommend.View, "carts": recommend.Cart, "orders": recommend.Buy}
	var users [][]recommend.Interaction
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	line := 0
	for sc.Scan() {
		line++
		var s struct {
			Session int64 `json:"session"`
			Events  []struct {
				Aid  int64  `json:"aid"`
				Ts   int64  `json:"ts"`
				Type string `json:"type"`
			} `json:"events"`
		}
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("otto: line %d: %w", line, err)
		}
		var h []recommend.Interaction
		for i, e := range s.Events {
			k, ok := kinds[e.Type]
			if !ok {
				return nil, fmt.Errorf("otto: line %d, event %d: type %q unknown", line, i, e.Type)
			}
			h = append(h, recommend.Interaction{User: strconv.FormatInt(s.Session, 10),
				Item: strconv.FormatInt(e.Aid, 10), Kind: k, Time: e.Ts})
		}
		users = append(users, h)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("otto: %w", err)
	}
	return users, nil
}
