# The classic tutorial's UDP client, unchanged but for the address (taken from argv).
import socket
import sys
client=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
ip_port=(sys.argv[1],int(sys.argv[2]))
while True:
    msg=input('>>>').strip()
    client.sendto(msg.encode('utf-8'),ip_port)
    data,server_addr=client.recvfrom(1024)
    print(data)
client.close()
