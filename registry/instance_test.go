package registry

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/beaconhq/beacon/internal/rpcerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// An instance over a limit is refused with InvalidArgument naming the
// field and the limit; one at the limit is taken.
func TestInstanceLimits(t *testing.T) {
	tags := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("t%d", i))
		}
		return out
	}
	meta := func(n, valueBytes int) map[string]string {
		m := map[string]string{}
		for i := range n {
			m[fmt.Sprintf("k%d", i)] = strings.Repeat("v", valueBytes)
		}
		return m
	}
	for _, tc := range []struct {
		name  string
		in    Instance
		field string // "" when valid
		limit string
	}{
		{"tags at the limit", Instance{Tags: tags(MaxTags)}, "", ""},
		{"100k tags", Instance{Tags: tags(100000)}, "tags", "limit of 64 (max-tags)"},
		{"a tag too long", Instance{Tags: []string{strings.Repeat("a", 64)}}, "tags", "longer than 63"},
		{"meta keys at the limit", Instance{Meta: meta(MaxMetaKeys, 8)}, "", ""},
		{"too many meta keys", Instance{Meta: meta(MaxMetaKeys+1, 8)}, "meta", "limit of 64 (max-meta-keys)"},
		{"a meta key too long", Instance{Meta: map[string]string{strings.Repeat("k", 129): "v"}}, "meta", "limit of 128 (max-meta-key-bytes)"},
		{"meta too large", Instance{Meta: meta(2, 40<<10)}, "meta", "limit of 65536 (max-meta-bytes)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.in
			in.Service, in.Port = "web", 80
			err := in.Normalize("n1", "127.0.0.1")
			if tc.field == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			var fe *FieldError
			st := status.Convert(rpcerr.From(err))
			if !errors.As(err, &fe) || fe.Field != tc.field || st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.limit) {
				t.Fatalf("got %v, want InvalidArgument on %s naming %q", err, tc.field, tc.limit)
			}
			if len(st.Message()) > 200 {
				t.Fatalf("the message is %d bytes long: %.200s…", len(st.Message()), st.Message())
			}
		})
	}
}
