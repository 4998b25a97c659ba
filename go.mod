module scopeguard

go 1.24
