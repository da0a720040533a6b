package cliout

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/api/beaconpb"
)

// TestNumbersAndBytes: 64-bit integers print as numbers, text payloads
// as text, binary ones as base64 with an encoding key, and Objects keep
// their order and may hold messages.
func TestNumbersAndBytes(t *testing.T) {
	stats := &beaconpb.QueueStats{Queue: "q", Depth: 2, Revision: 7}
	out, err := Marshal(stats)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if got["depth"] != float64(2) || got["revision"] != float64(7) || got["queue"] != "q" {
		t.Fatalf("stats: %s", out)
	}

	text := &beaconpb.ConfigEntry{Key: "k", Value: []byte("hello")}
	bin := &beaconpb.ConfigEntry{Key: "b", Value: []byte{0xff, 0x00}}
	for _, tc := range []struct {
		m        *beaconpb.ConfigEntry
		value    string
		encoding any
	}{{text, "hello", nil}, {bin, "/wA=", "base64"}} {
		out, _ := Marshal(tc.m)
		var e map[string]any
		if err := json.Unmarshal(out, &e); err != nil {
			t.Fatal(err)
		}
		if e["value"] != tc.value || e["value_encoding"] != tc.encoding {
			t.Errorf("%s: %s", tc.m.Key, out)
		}
	}

	var b bytes.Buffer
	p, _ := New(&b, JSON)
	obj := Object{}.With("z", 1).With("a", []*beaconpb.ConfigEntry{text}).WithBytes("raw", []byte{0xfe})
	if err := p.JSONLine(obj); err != nil {
		t.Fatal(err)
	}
	want := `{"z":1,"a":[{"key":"k","value":"hello",`
	if !strings.HasPrefix(b.String(), want) || !strings.Contains(b.String(), `"raw":"/g==","raw_encoding":"base64"}`) {
		t.Fatalf("object: %s", b.String())
	}
	if _, err := New(&b, "yaml"); err == nil {
		t.Fatal("-w yaml accepted")
	}
}
