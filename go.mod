module raftkv

go 1.26
