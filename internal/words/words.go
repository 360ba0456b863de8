// Package words writes counts in English for the messages people read.
package words

import "fmt"

// Count writes n with the noun in the singular or the plural ("1 error", "3 errors").
func Count[N ~int | ~int64 | ~uint64](n N, singular, plural string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, singular)
	}
	return fmt.Sprintf("%d %s", n, plural)
}
