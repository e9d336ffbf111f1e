# A real peer for duet's UDP tests: sends every datagram back to where it came from, unchanged.
# Binds 127.0.0.1 on a free port, prints the port on the first line of stdout, then echoes until killed.
import socket


def main():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)  # room for several 64 KiB datagrams
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1], flush=True)
    while True:
        data, sender = s.recvfrom(65535)
        s.sendto(data, sender)


main()
