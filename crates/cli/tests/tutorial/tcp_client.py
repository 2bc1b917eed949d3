# The classic tutorial's TCP client, unchanged but for the address (taken from argv).
from socket import *
import sys
clientSocket = socket(AF_INET, SOCK_STREAM)
serAddr = (sys.argv[1], int(sys.argv[2]))
clientSocket.connect(serAddr)
clientSocket.send(b"hello")
recvData = clientSocket.recv(1024)
print("接收到的数据为:", recvData)
clientSocket.close()
