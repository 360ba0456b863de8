package main

import "fmt"

// count writes n with the noun in the singular or the plural ("1 error", "3 errors").
func count(n int, singular, plural string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, singular)
	}
	return fmt.Sprintf("%d %s", n, plural)
}
