package exporter

import "testing"

func TestLabelValueKeepsNamesApart(t *testing.T) {
	cases := map[string]string{"server.crt": "server.crt", "caf\u00e9.crt": "caf\u00e9.crt", "\xff.crt": `\xff.crt`, "a\xc3\x28": `a\xc3(`}
	for in, want := range cases {
		if got := LabelValue(in); got != want {
			t.Errorf("LabelValue(%q) = %q, want %q", in, got, want)
		}
	}
	if LabelValue("\xfe.crt") == LabelValue("\xff.crt") {
		t.Error("two names that differ in invalid bytes share a label value")
	}
}
