pragma solidity ^0.4.9;

contract Wallet {
    address _walletLibrary;
    address owner;

    function Wallet(address lib) {
        _walletLibrary = lib;
        owner = msg.sender;
    }

    function() payable {
        require(msg.sender == owner);
        require(_walletLibrary.delegatecall(msg.data));
    }
}
