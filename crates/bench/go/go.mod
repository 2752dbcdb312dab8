module towermtls.bench/goserver

go 1.19
