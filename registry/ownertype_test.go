package registry

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestOwnerText: the journal reads and writes an owner as it always did
// ("agent", "config"), a session's id is never written, and Session gives
// the id back only for a session's owner.
func TestOwnerText(t *testing.T) {
	for _, o := range []Owner{OwnerAgent, OwnerConfig} {
		b, err := json.Marshal(Registration{Owner: o})
		if err != nil {
			t.Fatal(err)
		}
		var back Registration
		if err := json.Unmarshal(b, &back); err != nil || back.Owner != o {
			t.Errorf("%s: read back %+v, %v", b, back.Owner, err)
		}
	}
	var old Registration
	if err := json.Unmarshal([]byte(`{"owner":"agent"}`), &old); err != nil || old.Owner != OwnerAgent {
		t.Errorf("a journal's \"agent\": %+v, %v", old.Owner, err)
	}
	s := SessionOwner("0123secret")
	if b, _ := json.Marshal(Registration{Owner: s}); strings.Contains(string(b), "0123secret") {
		t.Errorf("a session's id is written: %s", b)
	}
	if id, ok := s.Session(); !ok || id != "0123secret" {
		t.Errorf("Session() = %q, %v", id, ok)
	}
	if _, ok := OwnerAgent.Session(); ok {
		t.Error("the agent is a session")
	}
	if s == SessionOwner("other") || s == OwnerAgent {
		t.Error("owners of different sessions compare equal")
	}
}
